// MF's blocked order (FPSGD's grid, Chin et al. 2015, for a parameter server): users and items
// are hashed into bands of about kRowsPerBand ids each, and an epoch visits the blocks (user band
// x item band) in a shuffled order, each block's ratings shuffled. Consecutive steps then touch
// one band's rows, which the servers' and this worker's caches keep, instead of rows spread over
// the whole table: on 10^6 users x 10^5 items 1.65x (dim 32) and 1.5x (dim 128) the ratings/s of
// the plain shuffle (docs/PERFORMANCE.md). Tables under kRowsPerBand users and items have one
// block, which is the plain shuffle, bit for bit.
//
// Small user bands: where the users need more than one band, they get more, down to bands of
// kMinUsersPerBand users, until a block holds about kStepsPerBlock steps. A step then holds
// several ratings of each of its users: fewer distinct rows to pull and push, and (measured, not
// derived) fewer epochs to a given test RMSE. On the planted set (10^5 users, 90 ratings
// each) 46 bands instead of 4 reached the test RMSE target in 7 epochs instead of 8 and ran an
// epoch in 0.5-0.6 s instead of 0.7 (docs/PERFORMANCE.md).
//
// Pairs: where the grid has two bands of each kind or more, the blocks are visited two at a
// time, two that share neither a user band nor an item band, and the steps alternate between
// them. Each step then reads none of the rows the step before it updates, so that with one worker
// its pull goes ahead of that step's push and the server copies its rows while the worker
// computes (TrainLoop, proto::FLAG_AHEAD). A grid of one item band has no such pairs and visits
// its blocks one by one: splitting 20k items into two bands to make pairs cost convergence (on
// the planted set the test RMSE after 10 epochs was 0.6003 instead of 0.5939).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

namespace tessera::worker {

inline constexpr double kRowsPerBand = 32768;

// The number of distinct values among id(0), ..., id(n - 1), estimated by linear counting: within
// a few per cent up to about 10^7 distinct values, and an underestimate above.
double EstimateDistinct(size_t n, const std::function<uint64_t(size_t)>& id);
// Bands for `distinct_ids` ids: about kRowsPerBand each, at least 1 and at most 4096.
int MfBands(double distinct_ids);

// The grid of the blocked order: block b is user band b / item_bands x item band b % item_bands.
struct MfBlockGrid {
  int user_bands = 1;
  int item_bands = 1;
};
// Steps a block should hold, about, and the fewest users in a band (MfGrid).
inline constexpr double kStepsPerBlock = 12;
inline constexpr double kMinUsersPerBand = 1024;

// The grid for about this many distinct users and items, and `ratings` ratings trained in steps
// of `batch_size`: MfBands of each, and where the users need more than one band, more user
// bands, down to kMinUsersPerBand users each, until a block holds about kStepsPerBlock steps.
MfBlockGrid MfGrid(double distinct_users, double distinct_items, double ratings, double batch_size);

// One epoch of the blocked order. Block b of `grid` holds the samples [block_begin[b],
// block_begin[b + 1]). The non-empty blocks are shuffled (seed) and paired greedily, each with a
// later one of neither its user band nor its item band (the first of the next 64 candidates
// that qualifies); a pair's two blocks, each shuffled, take turns step by step (`batch_size`
// samples a step, counted from the start of the epoch), and when one runs out the other goes
// on alone. *order receives every sample once; *disjoint_next one entry per step: true when the
// next step's samples share no band with this step's (the last step's entry is false).
// REQUIRES: batch_size > 0; block_begin has user_bands x item_bands + 1 non-decreasing entries
// from 0.
void BlockedEpochOrder(const std::vector<uint32_t>& block_begin, MfBlockGrid grid, uint64_t seed,
                       size_t batch_size, std::vector<uint32_t>* order,
                       std::vector<bool>* disjoint_next);

}  // namespace tessera::worker
