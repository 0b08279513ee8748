# survival oracle: survfit (Kaplan-Meier, Greenwood) with the log, log-log and plain
# intervals, the median with its interval (summary table) and quantile(fit, 0.5).
# Input columns: case, time, status (1 = event).
suppressPackageStartupMessages(library(survival))
oracle_survfit <- function(cases, emit) {
  for (k in unique(cases$case)) {
    s <- cases[cases$case == k, ]
    for (ct in c("log", "log-log", "plain")) {
      fit <- survfit(Surv(time, status) ~ 1, data = s, conf.type = ct)
      if (ct == "log") {
        emit(k, "time", fit$time)
        emit(k, "n_risk", fit$n.risk)
        emit(k, "n_event", fit$n.event)
        emit(k, "n_censor", fit$n.censor)
        emit(k, "surv", fit$surv)
        emit(k, "std_err", summary(fit, censored = TRUE)$std.err)    # SE of S(t)
        # the median by quantile(): differs from the table when S never leaves 0.5
        emit(k, "log:quantile_median", quantile(fit, 0.5, conf.int = FALSE))
      }
      emit(k, paste0(ct, ":lower"), fit$lower)
      emit(k, paste0(ct, ":upper"), fit$upper)
      emit(k, paste0(ct, ":median"), summary(fit)$table[c("median", "0.95LCL", "0.95UCL")])
    }
  }
}
