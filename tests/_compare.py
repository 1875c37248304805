"""Comparing nested results (tuples, lists, dicts of arrays) leaf by leaf."""

import numpy as np


def assert_close_tree(a, b, tol, what="", *, same_dtype=True):
    """Every leaf of ``a`` close to ``b``'s within ``tol`` (assert_allclose keywords); with
    ``same_dtype`` also the same shape and dtype.  ``what`` names the failing leaf."""
    if isinstance(a, (tuple, list)):
        for i, (p, q) in enumerate(zip(a, b, strict=True)):
            assert_close_tree(p, q, tol, f"{what}[{i}]", same_dtype=same_dtype)
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), what
        for k in a:
            assert_close_tree(a[k], b[k], tol, f"{what}[{k}]", same_dtype=same_dtype)
    else:
        if same_dtype:
            assert a.shape == b.shape and a.dtype == b.dtype, what
        np.testing.assert_allclose(a, b, err_msg=what, **tol)
