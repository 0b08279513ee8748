# survival oracle: survdiff (log-rank, rho = 0) over two or more groups.
# Input columns: case, time, status (1 = event), group (label).
suppressPackageStartupMessages(library(survival))
oracle_logrank <- function(cases, emit) {
  for (k in unique(cases$case)) {
    s <- cases[cases$case == k, ]
    s$group <- factor(s$group, levels = sort(unique(as.character(s$group))))
    fit <- survdiff(Surv(time, status) ~ group, data = s)
    df <- sum(fit$exp > 0) - 1                               # as print.survdiff
    emit(k, "chisq", fit$chisq)
    emit(k, "df", df)
    emit(k, "p", pchisq(fit$chisq, df, lower.tail = FALSE))
    emit(k, "n", fit$n)
    emit(k, "obs", fit$obs)
    emit(k, "exp", fit$exp)
  }
}
