"""Analysis of gradient descent beyond a single run: the critical stepsize (`critical`), linear stability at the
global minimisers (`stability`), the flattest minimiser of a given product (`minima`) and the sharpness of a
point (`sharpness`)."""
