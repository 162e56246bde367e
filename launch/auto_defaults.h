// Training flags chosen from the size of the data when the user gives none (issues 15 and 16): MF's
// batch size, learning rate, L2, epochs and early stopping (and, for millions of ratings, the
// optimizer); the CTR models' batch size, epochs
// and early stopping. The size is estimated before any node
// starts, from the training file itself (every rank of a job reads the same file at parse time,
// so every rank makes the same choice without a message), not from the reader's count.
//
// Pure functions but for EstimateLines, which reads at most the first MiB of a file.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "core/status.h"
#include "kernels/sparse_optimizer.h"

namespace tessera::launch {

// Lines (records) in the text file at `path`: exact up to 1 MiB, beyond that the file's size
// divided by the mean line length of its first MiB (within a few per cent for rating and click
// logs, whose lines are alike). InvalidArgument for an unreadable file.
StatusOr<int64_t> EstimateLines(const std::string& path);

// MF flags for a training set of about `ratings` ratings (per job): batch size, lr, L2 of
// factors and biases, epochs, early stopping. Small sets (below 300k
// ratings, MovieLens 100K's 80k among them) train a fixed number of epochs with small batches and
// more regularisation: holding 2 % of u1.base out for early stopping cost 0.003 test RMSE there,
// more than stopping at the right epoch gains. Larger sets take batches that keep the pipeline
// busy, and early stopping on the RMSE of valid_fraction of the training ratings, held out
// (unless the user names a --valid file), ends them; `epochs` is then an upper bound.
struct MfAutoDefaults {
  // Chosen, and named in the start-up line, only where it is not --optimizer's default (adagrad)
  // and the user gave neither --optimizer nor --lr: an lr is tuned to its optimizer.
  kernels::OptimizerKind optimizer = kernels::OptimizerKind::kAdagrad;
  int batch_size = 32;
  float lr = 0.02f;        // the lr of `optimizer`
  float other_lr = 0.02f;  // the lr chosen when the user names another optimizer
  float l2 = 0.09f;
  float l2_bias = 0.003f;
  int epochs = 60;
  int early_stop = 0;            // epochs of patience; 0: none
  double valid_fraction = 0.02;  // held out when early stopping is on (chosen or given)
};
MfAutoDefaults ChooseMfDefaults(int64_t ratings);

// Rows in the CTR training file at `path`: a binary cache's record count (its header checked),
// else EstimateLines. InvalidArgument for an unreadable file or a corrupt cache header.
StatusOr<int64_t> EstimateCtrRows(const std::string& path);

// CTR flags for a training file of about `rows` rows (per job): batch size, epochs and early
// stopping. A file of a million rows or more trains one pass of batch 4096 (click logs that
// size are learned in one pass, and a second one overfits the embeddings). A smaller file trains
// large batches (few steps an epoch, so that an epoch moves the model little) until the logloss
// on valid_fraction of its rows, held out unless --valid names a file, stops improving for
// early_stop epochs; `epochs` is then an upper bound. A file under 1,000 rows trains 10 epochs of
// batch 256 (a tenth of it would not tell one epoch from the next). The batch is per worker: with
// W workers an epoch has 1/W of the steps.
struct CtrAutoDefaults {
  int batch_size = 4096;
  int epochs = 1;
  int early_stop = 0;            // epochs of patience; 0: none
  double valid_fraction = 0.05;  // held out when early stopping is on (chosen or given)
};
CtrAutoDefaults ChooseCtrDefaults(int64_t rows);

struct TrainOptions;

// Sets each of o->mf's batch size, lr, l2, l2-bias, epochs, early stopping and validation
// fraction that the user did not give (`given(flag)` false) to ChooseMfDefaults of the training
// file's estimated size, and (*chosen_values)[flag] to the value's text. The optimizer is chosen
// only when neither --optimizer nor --lr is given, and the lr is that of the optimizer used.
// Early stopping comes with the chosen epochs only: a user who sets --epochs trains that many
// unless --early-stop is given too; with early stopping on and no --valid file, the held-out
// fraction is chosen unless given. Returns the start-up line that says what was chosen and why (""
// when nothing was). InvalidArgument for an unreadable --train.
StatusOr<std::string> ApplyMfAutoDefaults(const std::function<bool(const std::string&)>& given,
                                          TrainOptions* o,
                                          std::map<std::string, std::string>* chosen_values);

// ApplyMfAutoDefaults for a CTR model: batch size, epochs, early stopping and the held-out
// fraction from ChooseCtrDefaults, with the same rules for what the user gave.
StatusOr<std::string> ApplyCtrAutoDefaults(const std::function<bool(const std::string&)>& given,
                                           TrainOptions* o,
                                           std::map<std::string, std::string>* chosen_values);

// InvalidArgument when --order shuffled is given to a CTR model (MF only), --valid comes with
// --valid-fraction, or --valid names the --train or --test file. Runs before the defaults are
// chosen.
Status CheckValidationFlags(const TrainOptions& o);

}  // namespace tessera::launch
