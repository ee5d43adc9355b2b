"""What notebooks 01-05 measure and draw, as package functions, so a notebook
only calls them: parser_lab.py (01), numba_costs.py (02), event_loops.py
(03) and notebook_figures.py (the figures of 01, 02 and 05 that are not
bench-row plots).
"""
