# pROC oracle: AUC, DeLong variance/covariance, DeLong CI and the paired DeLong test.
# Input columns: case, y (0/1; 1 = case), a, b (scores; higher = case).
suppressPackageStartupMessages(library(pROC))
oracle_delong <- function(cases, emit) {
  for (k in unique(cases$case)) {
    s <- cases[cases$case == k, ]
    ra <- roc(s$y, s$a, levels = c(0, 1), direction = "<", quiet = TRUE)
    rb <- roc(s$y, s$b, levels = c(0, 1), direction = "<", quiet = TRUE)
    emit(k, "auc_a", auc(ra))
    emit(k, "auc_b", auc(rb))
    emit(k, "var_a", var(ra, method = "delong"))
    emit(k, "var_b", var(rb, method = "delong"))
    emit(k, "cov_ab", cov(ra, rb, method = "delong"))
    emit(k, "ci_a", ci.auc(ra, method = "delong"))            # low, auc, high
    two <- roc.test(ra, rb, method = "delong", paired = TRUE)
    emit(k, "z", two$statistic)
    emit(k, "p", two$p.value)
    emit(k, "diff_ci", two$conf.int)
    for (alt in c("greater", "less"))
      emit(k, paste0("p_", alt), roc.test(ra, rb, method = "delong", paired = TRUE,
                                          alternative = alt)$p.value)
  }
}
