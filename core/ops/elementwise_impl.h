// Internal launchers behind elementwise.h / copy.h: raw pointers + ElemIter. Operand order in the
// iterator is the argument order (output first). Safe for .cu files.
#pragma once
#include "core/dtype.h"
#include "core/ops/elementwise.h"
#include "core/ops/iter.h"

namespace seqmix::ops::impl {

void unary_cpu(UnaryOp op, DType t, const ElemIter& it, void* y, const void* x, double s);
void unary_backward_cpu(UnaryOp op, DType t, const ElemIter& it, void* dx, const void* x,
                        const void* dy, double s);
void binary_cpu(BinaryOp op, DType t, const ElemIter& it, void* c, const void* a, const void* b,
                double alpha);
void copy_cpu(DType dst_t, DType src_t, const ElemIter& it, void* dst, const void* src);
void fill_cpu(DType t, const ElemIter& it, void* dst, double value);

void unary_cuda(UnaryOp op, DType t, const ElemIter& it, void* y, const void* x, double s,
                cudaStream_t stream);
void unary_backward_cuda(UnaryOp op, DType t, const ElemIter& it, void* dx, const void* x,
                         const void* dy, double s, cudaStream_t stream);
void binary_cuda(BinaryOp op, DType t, const ElemIter& it, void* c, const void* a, const void* b,
                 double alpha, cudaStream_t stream);
void copy_cuda(DType dst_t, DType src_t, const ElemIter& it, void* dst, const void* src,
               cudaStream_t stream);
void fill_cuda(DType t, const ElemIter& it, void* dst, double value, cudaStream_t stream);
// Plain contiguous device copy of `nbytes` (16-byte vectors when aligned): the copy benchmark
// and same-dtype contiguous copies.
void copy_bytes_cuda(void* dst, const void* src, size_t nbytes, cudaStream_t stream);

}  // namespace seqmix::ops::impl
