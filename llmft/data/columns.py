"""Column names the data layer adds to users' rows."""

ROW_COLUMN = "__row__"  # a row's position in its train file, kept through the shuffled carve (for error messages)
