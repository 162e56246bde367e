#include "launch/job_identity.h"

#include <gtest/gtest.h>

#include "tests/testing/test_util.h"

namespace tessera::launch {
namespace {

using testing::TempDir;
using testing::WriteFile;

// The options of an MF job on `train` (parsed as `tessera train` would).
TrainOptions Parse(const std::vector<std::string>& args) {
  TrainOptions o;
  ParseOutcome outcome = ParseTrainOptions(args, &o);
  EXPECT_TRUE(outcome.run) << outcome.text;
  return o;
}

std::vector<proto::JobConfigEntry> Identity(const TrainOptions& o) {
  auto identity = JobIdentity(o);
  EXPECT_TRUE(identity.ok()) << identity.status().ToString();
  return identity.ok() ? *identity : std::vector<proto::JobConfigEntry>();
}

std::string ValueOf(const std::vector<proto::JobConfigEntry>& identity, const std::string& flag) {
  for (const auto& e : identity) {
    if (e.flag() == flag) return e.value();
  }
  return "(absent)";
}

TEST(JobIdentityTest, RecordsModelDataFingerprintAndHyperParametersAsTheRunUsesThem) {
  TempDir dir;
  WriteFile(dir.Join("train.txt"), "1 2 3.5\n2 3 4\n");
  auto identity = Identity(Parse({"--train", dir.Join("train.txt"), "--lr", "0.05", "--seed", "9",
                                  "--servers", "2", "--metrics-out", dir.Join("m.jsonl")}));
  EXPECT_EQ(ValueOf(identity, "model"), "mf");
  EXPECT_EQ(ValueOf(identity, "lr"), "0.05");  // the shortest text of the float
  EXPECT_EQ(ValueOf(identity, "seed"), "9");
  EXPECT_EQ(ValueOf(identity, "dim"), "32");
  EXPECT_EQ(ValueOf(identity, "test"), "(none)");
  EXPECT_EQ(ValueOf(identity, "train")
                .rfind(dir.Join("train.txt") + " (14 bytes, first MiB CRC-32 0x", 0),
            0u)
      << ValueOf(identity, "train");
  // Options that do not change the model are not part of it.
  for (const char* flag : {"servers", "metrics-out", "checkpoint-dir", "workers", "device"}) {
    EXPECT_EQ(ValueOf(identity, flag), "(absent)") << flag;
  }
  // CTR models record their own options, MF ones not.
  auto ctr = Identity(Parse({"--model", "deepfm", "--train", dir.Join("train.txt"), "--mlp", "8,4",
                             "--dense-lr", "0.01"}));
  EXPECT_EQ(ValueOf(ctr, "mlp"), "8,4");
  EXPECT_EQ(ValueOf(ctr, "dense-lr"), "0.01");
  EXPECT_EQ(ValueOf(ctr, "lr"), "0.001");  // the CTR default
  EXPECT_EQ(ValueOf(ctr, "l2"), "(absent)");
}

TEST(JobIdentityTest, SameDataPathWithOtherContentHasAnotherFingerprint) {
  TempDir dir;
  WriteFile(dir.Join("train.txt"), "1 2 3.5\n");
  const std::string before = ValueOf(Identity(Parse({"--train", dir.Join("train.txt")})), "train");
  WriteFile(dir.Join("train.txt"), "1 2 4.5\n");
  const std::string after = ValueOf(Identity(Parse({"--train", dir.Join("train.txt")})), "train");
  EXPECT_NE(before, after);
}

// The defect: a second job with another --lr silently continued the first one's.
TEST(JobIdentityTest, DifferentFlagsAreRefusedNamingEachWithBothValuesUnlessOverridden) {
  TempDir dir;
  WriteFile(dir.Join("train.txt"), "1 2 3.5\n");
  const auto first =
      Identity(Parse({"--train", dir.Join("train.txt"), "--lr", "0.05", "--epochs", "80"}));
  const auto second =
      Identity(Parse({"--train", dir.Join("train.txt"), "--lr", "0.1", "--epochs", "90"}));
  Status s = CompareJobIdentity(first, second, {}, "ck/step-40");
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(),
            "checkpoint ck/step-40 was written by a job with a different configuration: --epochs "
            "80 (this run: 90); --lr 0.05 (this run: 0.1). Resume with the checkpoint's values "
            "(give them as flags where this run chose others for the data's size), start a new "
            "--checkpoint-dir, or allow the change with --resume-override epochs,lr");
  Status one_left = CompareJobIdentity(first, second, {"lr"}, "ck/step-40");
  EXPECT_NE(one_left.message().find("--epochs 80 (this run: 90)."), std::string::npos)
      << one_left.message();
  EXPECT_EQ(one_left.message().find("--lr 0.05"), std::string::npos) << one_left.message();
  EXPECT_NE(one_left.message().find("--resume-override epochs"), std::string::npos);
  EXPECT_TRUE(CompareJobIdentity(first, second, {"lr", "--epochs"}, "ck/step-40").ok());
  // An optimizer or dim is what the checkpoint's rows hold: no override is offered for it (a
  // 3M-rating job of the adagrad defaults resumed under the rowwise-adagrad ones, for one).
  const auto rowwise = Identity(Parse({"--train", dir.Join("train.txt"), "--lr", "0.1", "--epochs",
                                       "80", "--optimizer", "rowwise-adagrad"}));
  Status shape = CompareJobIdentity(first, rowwise, {}, "ck/step-40");
  EXPECT_NE(shape.message().find("--optimizer adagrad (this run: rowwise-adagrad)"),
            std::string::npos)
      << shape.message();
  EXPECT_NE(shape.message().find("--resume-override lr ("), std::string::npos) << shape.message();
  EXPECT_NE(shape.message().find("(optimizer: the checkpoint's rows are of its values)"),
            std::string::npos)
      << shape.message();
  EXPECT_TRUE(CompareJobIdentity(first, first, {}, "ck/step-40").ok());
  // A flag recorded on one side only counts as different.
  std::vector<proto::JobConfigEntry> fewer(first.begin() + 1, first.end());
  EXPECT_FALSE(CompareJobIdentity(fewer, first, {}, "ck/step-40").ok());
}

// A checkpoint written before early stopping existed lacks its three flags: it matches a run
// with early stopping off, and not one with it on.
TEST(JobIdentityTest, CheckpointsWithoutTheEarlyStoppingFlagsMatchRunsWithoutEarlyStopping) {
  TempDir dir;
  WriteFile(dir.Join("train.txt"), "1 2 3.5\n");
  const auto now = Identity(Parse({"--train", dir.Join("train.txt"), "--epochs", "5"}));
  std::vector<proto::JobConfigEntry> old;
  for (const auto& e : now) {
    if (e.flag() != "valid" && e.flag() != "valid-fraction" && e.flag() != "early-stop") {
      old.push_back(e);
    }
  }
  ASSERT_EQ(old.size() + 3, now.size());
  EXPECT_TRUE(CompareJobIdentity(old, now, {}, "ck/step-40").ok());
  const auto stopping =
      Identity(Parse({"--train", dir.Join("train.txt"), "--epochs", "5", "--early-stop", "2"}));
  Status s = CompareJobIdentity(old, stopping, {}, "ck/step-40");
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("--early-stop (not set) (this run: 2)"), std::string::npos)
      << s.message();
}

// A checkpoint written before --order existed was trained in the plain shuffle: it matches
// --order shuffled, and the default blocked order only with the override.
TEST(JobIdentityTest, CheckpointsWithoutTheOrderMatchTheShuffledOrder) {
  TempDir dir;
  WriteFile(dir.Join("train.txt"), "1 2 3.5\n");
  const auto shuffled =
      Identity(Parse({"--train", dir.Join("train.txt"), "--epochs", "5", "--order", "shuffled"}));
  EXPECT_EQ(ValueOf(shuffled, "order"), "shuffled");
  std::vector<proto::JobConfigEntry> old;
  for (const auto& e : shuffled) {
    if (e.flag() != "order") old.push_back(e);
  }
  ASSERT_EQ(old.size() + 1, shuffled.size());
  EXPECT_TRUE(CompareJobIdentity(old, shuffled, {}, "ck/step-40").ok());
  const auto blocked = Identity(Parse({"--train", dir.Join("train.txt"), "--epochs", "5"}));
  EXPECT_EQ(ValueOf(blocked, "order"), "blocked in pairs");
  Status s = CompareJobIdentity(old, blocked, {}, "ck/step-40");
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("--order"), std::string::npos) << s.message();
  EXPECT_TRUE(CompareJobIdentity(old, blocked, {"order"}, "ck/step-40").ok());
}

// The blocked order before its blocks went in pairs visited an epoch's ratings in another order:
// its checkpoints resume in the paired order only with the override.
TEST(JobIdentityTest, CheckpointsOfTheUnpairedBlockedOrderNeedTheOverride) {
  TempDir dir;
  WriteFile(dir.Join("train.txt"), "1 2 3.5\n");
  const auto now = Identity(Parse({"--train", dir.Join("train.txt"), "--epochs", "5"}));
  std::vector<proto::JobConfigEntry> unpaired = now;
  for (auto& e : unpaired) {
    if (e.flag() == "order") e.set_value("blocked");
  }
  Status s = CompareJobIdentity(unpaired, now, {}, "ck/step-40");
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("--order blocked (this run: blocked in pairs)"), std::string::npos)
      << s.message();
  EXPECT_TRUE(CompareJobIdentity(unpaired, now, {"order"}, "ck/step-40").ok());
}

TEST(JobIdentityTest, ResumeOverrideNamesOnlyIdentityFlags) {
  EXPECT_TRUE(CheckResumeOverrides({"lr", "--epochs", "train"}).ok());
  Status s = CheckResumeOverrides({"lr", "servers"});
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("'servers' is not an option of the job's identity"), std::string::npos)
      << s.message();
}

}  // namespace
}  // namespace tessera::launch
