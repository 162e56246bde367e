#include "launch/auto_defaults.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <string>

#include "launch/flags.h"
#include "tests/testing/test_util.h"
#include "worker/data/ctr_cache.h"

namespace tessera::launch {
namespace {

using testing::TempDir;
using testing::WriteFile;

TEST(EstimateLinesTest, CountsSmallFilesExactlyWithOrWithoutAFinalNewline) {
  TempDir dir;
  WriteFile(dir.Join("a.txt"), "1 2 3\n4 5 6\n7 8 9\n");
  WriteFile(dir.Join("b.txt"), "1 2 3\n4 5 6\n7 8 9");
  WriteFile(dir.Join("empty.txt"), "");
  WriteFile(dir.Join("cr.txt"), "1 2 3\r4 5 6\r7 8 9\r");
  EXPECT_EQ(*EstimateLines(dir.Join("a.txt")), 3);
  EXPECT_EQ(*EstimateLines(dir.Join("b.txt")), 3);
  EXPECT_EQ(*EstimateLines(dir.Join("empty.txt")), 0);
  EXPECT_EQ(*EstimateLines(dir.Join("cr.txt")), 3);  // CR-only line ends, as the readers take
  EXPECT_EQ(EstimateLines(dir.Join("missing.txt")).status().code(), StatusCode::kInvalidArgument);
}

TEST(EstimateLinesTest, ExtrapolatesLargeFilesFromTheirFirstMiB) {
  TempDir dir;
  std::string text;
  for (int i = 0; i < 400000; ++i) {
    text += std::to_string(i % 1000) + "\t" + std::to_string(i % 97) + "\t" +
            std::to_string(1 + i % 5) + "\n";
  }
  WriteFile(dir.Join("big.txt"), text);
  ASSERT_GT(text.size(), 2u << 20);
  const int64_t estimate = *EstimateLines(dir.Join("big.txt"));
  EXPECT_NEAR(static_cast<double>(estimate), 400000.0, 400000.0 * 0.05);
}

TEST(ChooseMfDefaultsTest, SmallSetsTrainFixedEpochsLargeOnesStopEarlyWithLargeBatches) {
  const MfAutoDefaults small = ChooseMfDefaults(80000);
  EXPECT_EQ(small.early_stop, 0);
  EXPECT_EQ(small.batch_size, 32);
  const MfAutoDefaults medium = ChooseMfDefaults(1000000);
  EXPECT_GT(medium.early_stop, 0);
  EXPECT_GT(medium.valid_fraction, 0);
  EXPECT_GT(medium.batch_size, small.batch_size);
  const MfAutoDefaults large = ChooseMfDefaults(10000000);
  EXPECT_GT(large.early_stop, 0);
  EXPECT_GE(large.batch_size, 8192);
  EXPECT_LT(large.l2, small.l2);
  // Row-wise Adagrad for millions of ratings only; the MovieLens sets keep --optimizer's default.
  EXPECT_EQ(small.optimizer, kernels::OptimizerKind::kAdagrad);
  EXPECT_EQ(medium.optimizer, kernels::OptimizerKind::kAdagrad);
  EXPECT_EQ(large.optimizer, kernels::OptimizerKind::kRowwiseAdagrad);
}

TEST(ChooseCtrDefaultsTest, LargeFilesTrainOnePassSmallOnesStopEarlyWithSmallerBatches) {
  const CtrAutoDefaults large = ChooseCtrDefaults(45000000);  // Criteo's full day
  EXPECT_EQ(large.batch_size, 4096);
  EXPECT_EQ(large.epochs, 1);
  EXPECT_EQ(large.early_stop, 0);
  EXPECT_EQ(ChooseCtrDefaults(1000000).epochs, 1);        // the benchmark's file trains as before
  const CtrAutoDefaults small = ChooseCtrDefaults(8000);  // the real Criteo sample's split
  EXPECT_EQ(small.batch_size, 2048);
  EXPECT_GT(small.epochs, 1);
  EXPECT_GT(small.early_stop, 0);
  EXPECT_GT(small.valid_fraction, 0);
  // Under 1,000 rows: a fixed 10 epochs of 256 (nothing held out to find an empty tenth).
  const CtrAutoDefaults tiny = ChooseCtrDefaults(20);
  EXPECT_EQ(tiny.batch_size, 256);
  EXPECT_EQ(tiny.epochs, 10);
  EXPECT_EQ(tiny.early_stop, 0);
  // Below a million rows: the largest power of two from 256 to 4096 that leaves 3 steps an
  // epoch, early stopping on.
  for (int64_t rows : {1000, 3000, 20000, 60000, 300000, 999999}) {
    const CtrAutoDefaults d = ChooseCtrDefaults(rows);
    EXPECT_TRUE(d.batch_size == 256 || rows / d.batch_size >= 3) << rows;
    EXPECT_TRUE(d.batch_size == 4096 || rows / (2 * d.batch_size) < 3) << rows;
    EXPECT_GE(d.batch_size, 256) << rows;
    EXPECT_GT(d.early_stop, 0) << rows;
  }
  EXPECT_EQ(ChooseCtrDefaults(60000).batch_size, 4096);
}

TEST(EstimateCtrRowsTest, CountsTextLinesAndReadsACachesRecordCount) {
  TempDir dir;
  std::string text;
  for (int i = 0; i < 300; ++i)
    text += std::to_string(i % 2) + " 3:1 " + std::to_string(i) + ":1\n";
  WriteFile(dir.Join("clicks.libsvm"), text);
  EXPECT_EQ(*EstimateCtrRows(dir.Join("clicks.libsvm")), 300);
  worker::CtrReadOptions read;
  read.format = worker::CtrFormat::kLibsvm;
  ASSERT_TRUE(
      worker::WriteCtrCache(dir.Join("clicks.libsvm"), read, dir.Join("clicks.cache")).ok());
  EXPECT_EQ(*EstimateCtrRows(dir.Join("clicks.cache")), 300);
  // A cache whose header is damaged is refused here already, naming the file.
  std::string cache = testing::ReadFile(dir.Join("clicks.cache"));
  cache[50] ^= 1;
  WriteFile(dir.Join("bad.cache"), cache);
  auto bad = EstimateCtrRows(dir.Join("bad.cache"));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("bad.cache"), std::string::npos) << bad.status().message();
}

class AutoFlagsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    WriteFile(train_, "1 2 3.5\n2 3 4\n");
    WriteFile(test_, "1 3 4\n");
    WriteFile(valid_, "2 2 3\n");
  }
  ParseOutcome Parse(std::vector<std::string> args, TrainOptions* o) {
    args.insert(args.begin(), {"--train", train_});
    return ParseTrainOptions(args, o);
  }
  TempDir dir_;
  const std::string train_ = dir_.Join("train.txt");
  const std::string test_ = dir_.Join("test.txt");
  const std::string valid_ = dir_.Join("valid.txt");
};

TEST_F(AutoFlagsTest, UnsetFlagsAreChosenAndTheStartupLineSaysSo) {
  TrainOptions o;
  ParseOutcome out = Parse({}, &o);
  ASSERT_TRUE(out.run) << out.text;
  const MfAutoDefaults d = ChooseMfDefaults(2);
  EXPECT_EQ(o.mf.batch_size, d.batch_size);
  EXPECT_EQ(o.mf.epochs, d.epochs);
  EXPECT_FLOAT_EQ(o.optimizer.lr, d.lr);
  EXPECT_FLOAT_EQ(o.mf.l2, d.l2);
  EXPECT_FLOAT_EQ(o.mf.l2_bias, d.l2_bias);
  EXPECT_EQ(o.mf.early_stop, 0);
  EXPECT_NE(o.defaults_line.find("--batch-size 32"), std::string::npos) << o.defaults_line;
  EXPECT_NE(o.defaults_line.find(train_), std::string::npos) << o.defaults_line;
  // The option summary shows the values training uses, not the table's.
  EXPECT_NE(o.summary.find("batch-size = 32 (chosen for the data's size)"), std::string::npos)
      << o.summary;
}

// A training file of millions of ratings (its first MiB of lines, then a sparse tail that
// EstimateLines does not read): row-wise Adagrad at its lr, unless the user gives --optimizer
// (Adagrad's lr then) or --lr (the optimizer left as given).
TEST_F(AutoFlagsTest, MillionsOfRatingsChooseRowwiseAdagradWithItsLrUnlessEitherIsGiven) {
  std::string head;
  while (head.size() < (1u << 20)) head += "12345 678 3.5\n";
  WriteFile(train_, head);
  ASSERT_EQ(truncate(train_.c_str(), 64 << 20), 0);
  ASSERT_GE(*EstimateLines(train_), 3000000);
  const MfAutoDefaults d = ChooseMfDefaults(*EstimateLines(train_));
  TrainOptions chosen;
  ASSERT_TRUE(Parse({}, &chosen).run);
  EXPECT_EQ(chosen.optimizer.kind, kernels::OptimizerKind::kRowwiseAdagrad);
  EXPECT_FLOAT_EQ(chosen.optimizer.lr, d.lr);
  EXPECT_NE(chosen.defaults_line.find("--optimizer rowwise-adagrad"), std::string::npos)
      << chosen.defaults_line;
  TrainOptions adagrad;
  ASSERT_TRUE(Parse({"--optimizer", "adagrad"}, &adagrad).run);
  EXPECT_EQ(adagrad.optimizer.kind, kernels::OptimizerKind::kAdagrad);
  EXPECT_FLOAT_EQ(adagrad.optimizer.lr, d.other_lr);
  EXPECT_NE(d.lr, d.other_lr);
  EXPECT_EQ(adagrad.defaults_line.find("--optimizer"), std::string::npos);
  TrainOptions lr;
  ASSERT_TRUE(Parse({"--lr", "0.05"}, &lr).run);
  EXPECT_EQ(lr.optimizer.kind, kernels::OptimizerKind::kAdagrad);
  EXPECT_FLOAT_EQ(lr.optimizer.lr, 0.05f);
  EXPECT_EQ(lr.defaults_line.find("--optimizer"), std::string::npos) << lr.defaults_line;
}

TEST_F(AutoFlagsTest, GivenFlagsWinAndEarlyStoppingHoldsOutAFractionUnlessAFileIsGiven) {
  TrainOptions o;
  ASSERT_TRUE(Parse({"--batch-size", "7", "--lr", "0.3", "--l2", "0.5", "--l2-bias", "0.4",
                     "--epochs", "9"},
                    &o)
                  .run);
  EXPECT_EQ(o.mf.batch_size, 7);
  EXPECT_FLOAT_EQ(o.optimizer.lr, 0.3f);
  EXPECT_EQ(o.mf.epochs, 9);
  EXPECT_EQ(o.mf.early_stop, 0);
  EXPECT_EQ(o.defaults_line, "");
  TrainOptions stop;
  ASSERT_TRUE(Parse({"--early-stop", "2"}, &stop).run);
  EXPECT_EQ(stop.mf.early_stop, 2);
  EXPECT_DOUBLE_EQ(stop.mf.valid_fraction, ChooseMfDefaults(2).valid_fraction);
  TrainOptions file;
  ASSERT_TRUE(Parse({"--early-stop", "2", "--valid", test_}, &file).run);
  EXPECT_DOUBLE_EQ(file.mf.valid_fraction, 0);
  // Every tuning flag given and --early-stop too: the held-out fraction is still chosen.
  TrainOptions all;
  ParseOutcome out = Parse(
      {"--batch-size", "7", "--lr", "0.3", "--l2", "0.5", "--l2-bias", "0.4", "--early-stop", "2"},
      &all);
  ASSERT_TRUE(out.run) << out.text;
  EXPECT_EQ(all.mf.epochs, ChooseMfDefaults(2).epochs);
  EXPECT_DOUBLE_EQ(all.mf.valid_fraction, ChooseMfDefaults(2).valid_fraction);
}

TEST_F(AutoFlagsTest, ValidationThatIsTheTestSetOrMissingIsRefused) {
  TrainOptions o;
  ParseOutcome out = Parse({"--test", test_, "--valid", test_}, &o);
  EXPECT_FALSE(out.run);
  EXPECT_NE(out.text.find("is the --test file"), std::string::npos) << out.text;
  o = TrainOptions();
  out = Parse({"--early-stop", "2", "--valid-fraction", "0"}, &o);
  EXPECT_FALSE(out.run);
  EXPECT_NE(out.text.find("--early-stop needs validation data"), std::string::npos) << out.text;
  o = TrainOptions();
  out = Parse({"--valid", train_}, &o);
  EXPECT_FALSE(out.run);
  EXPECT_NE(out.text.find("is the --train file"), std::string::npos) << out.text;
  o = TrainOptions();
  out = Parse({"--valid-fraction", "0.9"}, &o);
  EXPECT_FALSE(out.run);
  o = TrainOptions();
  out = Parse({"--valid", valid_, "--valid-fraction", "0.1"}, &o);
  EXPECT_FALSE(out.run);
  EXPECT_NE(out.text.find("exclude each other"), std::string::npos) << out.text;
}

TEST_F(AutoFlagsTest, OrderIsBlockedByDefaultShuffledOnRequestAndMfOnly) {
  TrainOptions o;
  ASSERT_TRUE(Parse({}, &o).run);
  EXPECT_TRUE(o.mf.blocked_order);
  o = TrainOptions();
  ASSERT_TRUE(Parse({"--order", "shuffled"}, &o).run);
  EXPECT_FALSE(o.mf.blocked_order);
  o = TrainOptions();
  ParseOutcome out = Parse({"--order", "random"}, &o);
  EXPECT_FALSE(out.run);
  EXPECT_NE(out.text.find("--order must be blocked|shuffled"), std::string::npos) << out.text;
  o = TrainOptions();
  out = Parse({"--model", "deepfm", "--order", "shuffled"}, &o);
  EXPECT_FALSE(out.run);
  EXPECT_NE(out.text.find("--order is an MF option"), std::string::npos) << out.text;
}

TEST_F(AutoFlagsTest, CtrModelsChooseBatchAndEpochsAndStopEarlyOnHeldOutRows) {
  std::string clicks;
  for (int i = 0; i < 8000; ++i)
    clicks += std::to_string(i % 2) + " 1:1 2:" + std::to_string(i) + "\n";
  const std::string ctr_train = dir_.Join("clicks.libsvm");
  WriteFile(ctr_train, clicks);
  TrainOptions o;
  ParseOutcome out = ParseTrainOptions({"--model", "deepfm", "--train", ctr_train}, &o);
  ASSERT_TRUE(out.run) << out.text;
  const CtrAutoDefaults d = ChooseCtrDefaults(8000);
  EXPECT_EQ(o.ctr_options.batch_size, d.batch_size);
  EXPECT_EQ(o.ctr_options.epochs, d.epochs);
  EXPECT_EQ(o.ctr_options.early_stop, d.early_stop);
  EXPECT_DOUBLE_EQ(o.ctr_options.valid_fraction, d.valid_fraction);
  EXPECT_NE(o.defaults_line.find("about 8k training rows"), std::string::npos) << o.defaults_line;
  EXPECT_NE(o.defaults_line.find("--batch-size 2048"), std::string::npos) << o.defaults_line;
  // --epochs given: that many, no early stopping; a --valid file instead of a held-out fraction.
  TrainOptions fixed;
  ASSERT_TRUE(
      ParseTrainOptions({"--model", "lr", "--train", ctr_train, "--epochs", "2"}, &fixed).run);
  EXPECT_EQ(fixed.ctr_options.epochs, 2);
  EXPECT_EQ(fixed.ctr_options.early_stop, 0);
  EXPECT_EQ(fixed.ctr_options.batch_size, d.batch_size);
  // --early-stop 0 on a file where it was chosen: the epochs are a fixed count, not "at most".
  TrainOptions off;
  ASSERT_TRUE(
      ParseTrainOptions({"--model", "lr", "--train", ctr_train, "--early-stop", "0"}, &off).run);
  EXPECT_EQ(off.ctr_options.early_stop, 0);
  EXPECT_EQ(off.defaults_line.find("(at most)"), std::string::npos) << off.defaults_line;
  TrainOptions file;
  out = ParseTrainOptions({"--model", "dcn_v2", "--train", ctr_train, "--valid", test_}, &file);
  ASSERT_TRUE(out.run) << out.text;
  EXPECT_EQ(file.ctr_options.valid_path, test_);
  EXPECT_DOUBLE_EQ(file.ctr_options.valid_fraction, 0);
  EXPECT_EQ(file.ctr_options.early_stop, d.early_stop);
}

}  // namespace
}  // namespace tessera::launch
