"""A row-major matrix product on flat storage, lowered to one BLAS dgemm call.

``_matmul(ta, tb, m, n, k, a, ao, b, bo, c, co)`` writes the C-ordered m x n matrix

    C = op(A) op(B),   op(A) = A^T if ta else A  (m x k),   op(B) = B^T if tb else B  (k x n)

into ``c[co : co + m*n]``, reading A from ``a`` at element offset ``ao`` (stored C-ordered as m x k, or
k x m when ``ta``) and B from ``b`` at offset ``bo`` (k x n, or n x k when ``tb``).  ``a``, ``b``, ``c``
are C-contiguous float64 arrays of any dimension; only their data pointers are used, so the caller is
responsible for the offsets staying in bounds (`_loss_grad` carves them from sizes it computed itself).

Why an intrinsic rather than ``np.dot(x, y, out)``
-------------------------------------------------
Numba lowers every ``np.dot`` call site (and every ``reshape`` that makes its 2-D operands) with shape
checks, contiguity branches, copies and compiled error paths.  In the gradient kernel these made most of
the ~15 s it took to compile on a fresh cache.  Here the product is a handful of LLVM instructions and one
call to ``numba_xxgemm``, the same BLAS entry point (SciPy's ``cython_blas.dgemm``) that ``np.dot`` ends
in, so the numbers are those of ``np.dot``.  The call is by symbol name, which keeps the kernels cacheable.

Row-major to column-major: the C-ordered m x n matrix C is the column-major n x m matrix C^T, and
C^T = op(B)^T op(A)^T, so the BLAS call swaps the operands and the sizes m and n.
"""

from __future__ import annotations

from typing import Any

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.extending import intrinsic
from numba.np.linalg import ensure_blas

ensure_blas()  # fail at import, with SciPy's message, if BLAS is missing or has the wrong integer width

_LL_CHAR = ir.IntType(8)


def _gemm_typing(ta: Any, tb: Any, m: Any, n: Any, k: Any, a: Any, ao: Any, b: Any, bo: Any, c: Any, co: Any,
                 beta: Any = None) -> None:
    for name, arr in (("a", a), ("b", b), ("c", c)):
        if not (isinstance(arr, types.Array) and arr.dtype == types.float64 and arr.layout == "C"):
            raise TypingError(f"_matmul: {name} must be a C-contiguous float64 array, got {arr}")
    for name, flag in (("ta", ta), ("tb", tb)):
        if not isinstance(flag, types.Boolean):
            raise TypingError(f"_matmul: {name} must be a bool, got {flag}")
    for name, size in (("m", m), ("n", n), ("k", k), ("ao", ao), ("bo", bo), ("co", co)):
        if not isinstance(size, types.Integer):
            raise TypingError(f"_matmul: {name} must be an integer, got {size}")
    if beta is not None and not isinstance(beta, types.Float):
        raise TypingError(f"_matmul_add: beta must be a float, got {beta}")


def _gemm_codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
    """C = op(A) op(B) + beta C (beta = 0 without an 11th argument) by one ``numba_xxgemm`` call."""
    intp = context.get_value_type(types.intp)
    void_p = cgutils.voidptr_t
    f64 = context.get_value_type(types.float64)
    t = signature.args
    v_ta, v_tb = args[0], args[1]

    def size(i: int) -> Any:
        return context.cast(builder, args[i], t[i], types.intp)

    def pointer(i_arr: int, i_off: int) -> Any:
        data = context.make_array(t[i_arr])(context, builder, args[i_arr]).data
        return builder.bitcast(builder.gep(data, [size(i_off)]), void_p)

    m_, n_, k_ = size(2), size(3), size(4)
    # leading dimensions of the stored (row-major) operands
    lda = builder.select(v_ta, m_, k_)
    ldb = builder.select(v_tb, k_, n_)
    ch_t = ir.Constant(_LL_CHAR, ord("t"))
    ch_n = ir.Constant(_LL_CHAR, ord("n"))
    fnty = ir.FunctionType(ir.IntType(32), [_LL_CHAR, _LL_CHAR, _LL_CHAR, intp, intp, intp, void_p, void_p,
                                            intp, void_p, intp, void_p, void_p, intp])
    fn = cgutils.get_or_insert_function(builder.module, fnty, "numba_xxgemm")
    alpha = cgutils.alloca_once_value(builder, ir.Constant(f64, 1.0))
    if len(args) > 11:
        beta = cgutils.alloca_once_value(builder, context.cast(builder, args[11], t[11], types.float64))
    else:
        beta = cgutils.alloca_once_value(builder, ir.Constant(f64, 0.0))
    builder.call(fn, [
        ir.Constant(_LL_CHAR, ord("d")),
        builder.select(v_tb, ch_t, ch_n),  # column-major first operand: B
        builder.select(v_ta, ch_t, ch_n),
        n_, m_, k_,
        builder.bitcast(alpha, void_p),
        pointer(7, 8), ldb,
        pointer(5, 6), lda,
        builder.bitcast(beta, void_p),
        pointer(9, 10), n_,
    ])
    return context.get_dummy_value()


def _matmul_typing(typingctx: Any, ta: Any, tb: Any, m: Any, n: Any, k: Any, a: Any, ao: Any, b: Any, bo: Any,
                   c: Any, co: Any) -> Any:
    """C = op(A) op(B) (see the module docstring)."""
    _gemm_typing(ta, tb, m, n, k, a, ao, b, bo, c, co)
    return types.void(ta, tb, m, n, k, a, ao, b, bo, c, co), _gemm_codegen


def _matmul_add_typing(typingctx: Any, ta: Any, tb: Any, m: Any, n: Any, k: Any, a: Any, ao: Any, b: Any,
                       bo: Any, c: Any, co: Any, beta: Any) -> Any:
    """C = op(A) op(B) + beta C."""
    _gemm_typing(ta, tb, m, n, k, a, ao, b, bo, c, co, beta)
    return types.void(ta, tb, m, n, k, a, ao, b, bo, c, co, beta), _gemm_codegen


def _dot_typing(typingctx: Any, n: Any, a: Any, ao: Any, b: Any, bo: Any) -> Any:
    """sum_i a[ao + i] b[bo + i] for i < n, by BLAS ddot (``numba_xxdot``), for C-contiguous float64 arrays.

    A scalar running sum in a loop is latency-bound (LLVM does not reorder floating-point additions), and
    ``np.dot`` on slices costs compile time for its checks; this is one call.
    """
    for name, arr in (("a", a), ("b", b)):
        if not (isinstance(arr, types.Array) and arr.dtype == types.float64 and arr.layout == "C"):
            raise TypingError(f"_dot: {name} must be a C-contiguous float64 array, got {arr}")
    for name, size in (("n", n), ("ao", ao), ("bo", bo)):
        if not isinstance(size, types.Integer):
            raise TypingError(f"_dot: {name} must be an integer, got {size}")
    sig = types.float64(n, a, ao, b, bo)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        intp = context.get_value_type(types.intp)
        void_p = cgutils.voidptr_t
        t = signature.args

        def pointer(i_arr: int, i_off: int) -> Any:
            data = context.make_array(t[i_arr])(context, builder, args[i_arr]).data
            off = context.cast(builder, args[i_off], t[i_off], types.intp)
            return builder.bitcast(builder.gep(data, [off]), void_p)

        fnty = ir.FunctionType(ir.IntType(32), [_LL_CHAR, _LL_CHAR, intp, void_p, void_p, void_p])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "numba_xxdot")
        f64 = context.get_value_type(types.float64)
        out = cgutils.alloca_once_value(builder, ir.Constant(f64, 0.0))
        builder.call(fn, [ir.Constant(_LL_CHAR, ord("d")), ir.Constant(_LL_CHAR, 0),
                          context.cast(builder, args[0], t[0], types.intp), pointer(1, 2), pointer(3, 4),
                          builder.bitcast(out, void_p)])
        return builder.load(out)

    return sig, codegen


# Typed as Any: the kernels call these with the arguments after ``typingctx`` (Numba supplies it).
_matmul: Any = intrinsic(_matmul_typing)
_matmul_add: Any = intrinsic(_matmul_add_typing)
_dot: Any = intrinsic(_dot_typing)
