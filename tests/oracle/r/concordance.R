# survival oracle: concordance() -- Harrell's C (timewt = "n") and Uno's C
# (timewt = "n/G2", truncated at ymax = tau). reverse = TRUE: higher risk = earlier event.
# Input columns: case, time, status (1 = event), risk, tau.
suppressPackageStartupMessages(library(survival))
oracle_concordance <- function(cases, emit) {
  for (k in unique(cases$case)) {
    s <- cases[cases$case == k, ]
    harrell <- concordance(Surv(time, status) ~ risk, data = s, reverse = TRUE)
    uno <- concordance(Surv(time, status) ~ risk, data = s, reverse = TRUE,
                       timewt = "n/G2", ymax = s$tau[1])
    emit(k, "harrell", harrell$concordance)
    emit(k, "uno", uno$concordance)
  }
}
