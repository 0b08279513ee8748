# Shared by the oracle scripts: results go out as "case,key,index,value" lines with 17
# significant digits (doubles round-trip exactly; NA and Inf as R prints them).
oracle_emitter <- function(con) {
  writeLines("case,key,index,value", con)
  function(case, key, value) {
    value <- as.numeric(value)
    if (length(value) == 0) return(invisible(NULL))
    writeLines(sprintf("%d,%s,%d,%.17g", as.integer(case), key, seq_along(value) - 1L, value),
               con)
  }
}
