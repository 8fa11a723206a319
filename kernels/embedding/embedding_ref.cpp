// CPU embedding: gather rows; backward adds rows in increasing position order.
#include "core/check.h"
#include "core/dispatch.h"
#include "core/ops/convert.h"
#include "kernels/embedding/embedding.h"

namespace seqmix {

namespace {
template <typename I>
std::vector<int64_t> checked_indices(const Tensor& idx, int64_t v) {
  const I* p = idx.data<I>();
  std::vector<int64_t> out(size_t(idx.numel()));
  for (int64_t n = 0; n < idx.numel(); ++n) {
    const int64_t k = int64_t(p[n]);
    SEQMIX_CHECK_KIND(Data, k >= 0 && k < v,
                      "embedding: index {} at position {} is outside [0, {})", k, n, v);
    out[size_t(n)] = k;
  }
  return out;
}

std::vector<int64_t> indices_of(const Tensor& idx, int64_t v) {
  if (idx.dtype() == DType::I32) return checked_indices<int32_t>(idx, v);
  return checked_indices<int64_t>(idx, v);
}

template <typename W, typename O>
void gather(const W* w, const std::vector<int64_t>& ix, O* out, int64_t c) {
  const int64_t n = int64_t(ix.size());
#pragma omp parallel for if (n * c > (1 << 15)) schedule(static)
  for (int64_t r = 0; r < n; ++r)
    for (int64_t j = 0; j < c; ++j) out[r * c + j] = ops::convert<O>(w[ix[size_t(r)] * c + j]);
}

// Sums each index's rows in increasing position order in the accumulation type, then adds the
// sum to dweight once (as the GPU does), so 16-bit gradients are rounded once, not per row.
// Buffers cover only the rows that occur.
template <typename G, typename D>
void scatter_add(const G* dout, const std::vector<int64_t>& ix, D* dw, int64_t v, int64_t c) {
  using A = acc_t<D>;
  std::vector<int64_t> slot(static_cast<size_t>(v), -1), rows;
  for (int64_t k : ix)
    if (slot[size_t(k)] < 0) {
      slot[size_t(k)] = int64_t(rows.size());
      rows.push_back(k);
    }
  std::vector<A> acc(rows.size() * static_cast<size_t>(c), A(0));
  for (size_t r = 0; r < ix.size(); ++r) {
    A* row = acc.data() + slot[size_t(ix[r])] * c;
    const G* g = dout + int64_t(r) * c;
    for (int64_t j = 0; j < c; ++j) row[j] += A(to_acc<acc_t<G>>(g[j]));
  }
  for (size_t s = 0; s < rows.size(); ++s) {
    D* d = dw + rows[s] * c;
    const A* a = acc.data() + int64_t(s) * c;
    for (int64_t j = 0; j < c; ++j) d[j] = from_acc<D>(to_acc<A>(d[j]) + a[j]);
  }
}
}  // namespace

void embedding_fwd_ref(const EmbeddingFwdArgs& a) {
  const auto ix = indices_of(a.indices, a.weight.size(0));
  const int64_t c = a.weight.size(1);
  SEQMIX_DISPATCH_FLOAT(a.weight.dtype(), "embedding", W, {
    SEQMIX_DISPATCH_FLOAT(a.out.dtype(), "embedding", O,
                          gather<W, O>(a.weight.data<W>(), ix, a.out.data<O>(), c));
  });
}

void embedding_bwd_ref(const EmbeddingBwdArgs& a) {
  const auto ix = indices_of(a.indices, a.dweight.size(0));
  const int64_t c = a.dweight.size(1);
  SEQMIX_DISPATCH_FLOAT(a.dout.dtype(), "embedding_bwd", G, {
    SEQMIX_DISPATCH_FLOAT(
        a.dweight.dtype(), "embedding_bwd", D,
        scatter_add<G, D>(a.dout.data<G>(), ix, a.dweight.data<D>(), a.dweight.size(0), c));
  });
}

}  // namespace seqmix
