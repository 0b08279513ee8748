# One R process for every statistic family the oracle tests need (R and the survival
# package take seconds to start, so the families share one start).
# Usage: Rscript --vanilla run_oracle.R <dir> <family>...
#   reads <dir>/<family>_in.csv, writes <dir>/<family>_out.csv; <family>.R next to this
#   file defines oracle_<family>(cases, emit).
here <- dirname(normalizePath(sub("^--file=", "", grep("^--file=", commandArgs(),
                                                      value = TRUE))))
args <- commandArgs(trailingOnly = TRUE)
if (length(args) < 2) stop("usage: Rscript run_oracle.R <dir> <family>...")
source(file.path(here, "common.R"))
for (family in args[-1]) {
  source(file.path(here, paste0(family, ".R")))
  con <- file(file.path(args[1], paste0(family, "_out.csv")), open = "w")
  get(paste0("oracle_", family))(read.csv(file.path(args[1], paste0(family, "_in.csv"))),
                                 oracle_emitter(con))
  close(con)
}
