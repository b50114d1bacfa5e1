"""Reproductions of the papers that made attention mainstream, each against the fixed-vector model it replaced."""
