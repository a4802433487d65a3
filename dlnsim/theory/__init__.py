"""The reference paper's stepsize bounds: Theorem 2.4 with (5.1), Remark 2.5(b) (`bounds`) and Theorem 2.6 for a
set of starts (`set_bound`)."""
