"""Tier 5, what a user runs: the `keras-pvc` command line (`cli`), the
embedded demo (`demo`), the HTML run report (`report`) and the attention
figures (`visualize`). Nothing below this tier imports it.
"""
