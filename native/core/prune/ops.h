// The pruning decisions' host arithmetic, unit-tested on its own and the oracle of the
// backends' pruning ops: MI, deterministic top-k, DPC-kNN merging, the recycled counts and the
// CLS-prior pad mask. Built with -ffp-contract=off: the values that top-k and DPC-kNN compare
// must be bit-identical to the CUDA backend's, which rounds every multiply and add separately.
#pragma once
#include <cstdint>
#include <vector>


namespace vla {

// MI of one head (docs/autoprune.md, "Mutual information"): X = probs[t, cols[v]] over n_text rows (row stride ld), base 2,
// eps 1e-6 inside the denominator and as the ratio's floor.
double prune_mutual_information(const float* probs, int64_t ld, int64_t n_text, const std::vector<int64_t>& cols);

// AutoPrune's first-stage score prior + coef * score, rounded as the CUDA backend rounds it.
float prune_prior_score(float prior, float coef, float score);

// Indices of the k largest scores, returned in ascending index order; ties go to the lower
// index so runs are reproducible.
std::vector<int64_t> prune_topk(const std::vector<float>& scores, int64_t k);

// DPC-kNN merging (docs/autoprune.md, "Positions and recycling") of x [m, d] into c tokens [c, d];
// deterministic, no tie noise. A token's delta is its distance to the nearest denser token.
// Density ties (exact: every mutually-nearest pair ties when there are two clusters): by default
// the earlier token (lower index) counts as denser, so one of a tied pair is a peak; with
// reference_ties only strictly denser tokens count, so both are peaks, as the reference runs
// (its 1e-6 tie noise is rounded away in fp16).
std::vector<float> prune_dpc_knn_merge(const std::vector<float>& x, int64_t m, int64_t d, int64_t c,
                                       bool reference_ties = false);

// Token recycling (docs/autoprune.md, "Positions and recycling") when d visual rows are pruned: the best-scored M = int(0.3 d) + 1
// of them (0 if d == 0) merge into C = min(M / 10 + 1, M) rows.
int64_t prune_recycle_candidates(int64_t d);  // M
int prune_recycled_count(int64_t d);          // C

// LLaVA-1.5's pad mask on a g x g patch grid (1 = padding): the image letterboxed into a square of
// side max(w, h), its band widened by floor((side + 23) / 24) px on each side, nearest-resized.
std::vector<uint8_t> prune_pad_mask(int width, int height, int grid);

}  // namespace vla
