#include "worker/mf_order.h"

#include <algorithm>
#include <cmath>

#include "core/splitmix64.h"
#include "worker/worker_node.h"

namespace tessera::worker {
namespace {

// Blocks a block may be paired with: the next this many in the shuffled order not yet taken.
constexpr int kPairCandidates = 64;

// A run of consecutive samples of the order from one block.
struct Piece {
  size_t begin;  // position in the order
  uint32_t block;
};

}  // namespace

double EstimateDistinct(size_t n, const std::function<uint64_t(size_t)>& id) {
  // Linear counting (Whang et al. 1990): hash every id into m = 2^24 bits; d distinct ids leave
  // about m * exp(-d / m) of them clear. One pass and 2 MiB.
  constexpr uint64_t kBits = uint64_t{1} << 24;
  std::vector<uint64_t> bits(kBits / 64, 0);
  for (size_t i = 0; i < n; ++i) {
    const uint64_t h = SplitMix64(id(i)) >> 40;
    bits[h >> 6] |= uint64_t{1} << (h & 63);
  }
  uint64_t set = 0;
  for (uint64_t word : bits) set += static_cast<uint64_t>(__builtin_popcountll(word));
  const double clear = static_cast<double>(std::max<uint64_t>(kBits - set, 1));
  return static_cast<double>(kBits) * std::log(static_cast<double>(kBits) / clear);
}

int MfBands(double distinct_ids) {
  return static_cast<int>(std::clamp(std::ceil(distinct_ids / kRowsPerBand), 1.0, 4096.0));
}

MfBlockGrid MfGrid(double distinct_users, double distinct_items, double ratings,
                   double batch_size) {
  MfBlockGrid grid{MfBands(distinct_users), MfBands(distinct_items)};
  if (grid.user_bands > 1) {
    const double for_steps = std::ceil(ratings / (kStepsPerBlock * batch_size * grid.item_bands));
    const double most = std::floor(distinct_users / kMinUsersPerBand);
    grid.user_bands = static_cast<int>(
        std::clamp(std::min(for_steps, most), static_cast<double>(grid.user_bands), 4096.0));
  }
  return grid;
}

void BlockedEpochOrder(const std::vector<uint32_t>& block_begin, MfBlockGrid grid, uint64_t seed,
                       size_t batch_size, std::vector<uint32_t>* order,
                       std::vector<bool>* disjoint_next) {
  const size_t total = block_begin.back();
  const auto item_bands = static_cast<uint32_t>(grid.item_bands);
  auto apart = [&](uint32_t a, uint32_t b) {
    return a / item_bands != b / item_bands && a % item_bands != b % item_bands;
  };
  std::vector<uint32_t> visit;  // the non-empty blocks, shuffled
  for (size_t b = 0; b + 1 < block_begin.size(); ++b) {
    if (block_begin[b + 1] > block_begin[b]) visit.push_back(static_cast<uint32_t>(b));
  }
  ShuffleIndices(&visit, SplitMix64(seed ^ 0x3C6EF372FE94F82Bull));

  order->resize(total);
  std::vector<Piece> pieces;
  std::vector<bool> taken(visit.size(), false);
  std::vector<uint32_t> runs[2];  // the pair's blocks' samples, each shuffled
  auto shuffle_block = [&](uint32_t b, std::vector<uint32_t>* out) {
    out->resize(block_begin[b + 1] - block_begin[b]);
    for (size_t i = 0; i < out->size(); ++i) (*out)[i] = block_begin[b] + static_cast<uint32_t>(i);
    ShuffleIndices(out, seed ^ (b * 0x9E3779B97F4A7C15ull));
  };
  size_t at = 0;
  for (size_t v = 0; v < visit.size(); ++v) {
    if (taken[v]) continue;
    taken[v] = true;
    uint32_t ids[2] = {visit[v], visit[v]};
    int candidates = 0;
    runs[1].clear();
    for (size_t w = v + 1; w < visit.size() && candidates < kPairCandidates; ++w) {
      if (taken[w]) continue;
      ++candidates;
      if (apart(ids[0], visit[w])) {
        taken[w] = true;
        ids[1] = visit[w];
        shuffle_block(ids[1], &runs[1]);
        break;
      }
    }
    shuffle_block(ids[0], &runs[0]);
    // Turns: one block fills the step to its end, then the other the next step.
    size_t next[2] = {0, 0};
    int turn = 0;
    while (next[0] < runs[0].size() || next[1] < runs[1].size()) {
      if (next[turn] == runs[turn].size()) turn ^= 1;
      const size_t take = std::min(runs[turn].size() - next[turn], batch_size - at % batch_size);
      if (pieces.empty() || pieces.back().block != ids[turn]) pieces.push_back({at, ids[turn]});
      std::copy_n(runs[turn].data() + next[turn], take, order->data() + at);
      next[turn] += take;
      at += take;
      turn ^= 1;
    }
  }

  const size_t steps = (total + batch_size - 1) / batch_size;
  disjoint_next->assign(steps, false);
  auto piece_end = [&](size_t p) { return p + 1 < pieces.size() ? pieces[p + 1].begin : total; };
  size_t first = 0;  // the first piece that reaches into step s
  for (size_t s = 0; s + 1 < steps; ++s) {
    const size_t begin = s * batch_size, mid = begin + batch_size;
    const size_t end = std::min(total, mid + batch_size);
    while (piece_end(first) <= begin) ++first;
    bool disjoint = true;
    for (size_t i = first; disjoint && i < pieces.size() && pieces[i].begin < mid; ++i) {
      for (size_t j = i; disjoint && j < pieces.size() && pieces[j].begin < end; ++j) {
        if (piece_end(j) > mid && !apart(pieces[i].block, pieces[j].block)) disjoint = false;
      }
    }
    (*disjoint_next)[s] = disjoint;
  }
}

}  // namespace tessera::worker
