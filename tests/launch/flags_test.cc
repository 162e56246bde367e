#include "launch/flags.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "launch/auto_defaults.h"
#include "tests/testing/test_util.h"

namespace tessera::launch {
namespace {

using testing::TempDir;
using testing::WriteFile;

ParseOutcome Parse(std::vector<std::string> args, TrainOptions* options) {
  return ParseTrainOptions(args, options);
}

class FlagsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    train_ = dir_.Join("train.txt");
    WriteFile(train_, "1 2 3.5\n");
  }
  TempDir dir_;
  std::string train_;
};

TEST_F(FlagsTest, NoTrainFileMeansTheEmbeddedDemo) {
  TrainOptions o;
  ParseOutcome out = Parse({}, &o);
  ASSERT_TRUE(out.run) << out.text;
  EXPECT_TRUE(o.embedded_default);
  EXPECT_GT(o.embedded_data.ratings, 0);
  EXPECT_EQ(o.servers, 1);
  EXPECT_EQ(o.workers, 1);
}

TEST_F(FlagsTest, TypedValuesAreParsedAndSummarised) {
  TrainOptions o;
  ParseOutcome out = Parse(
      {"--train", train_, "--dim", "16", "--epochs", "3", "--optimizer", "sgd", "--lr", "0.01",
       "--servers", "2", "--workers", "3", "--deterministic", "--format", "libmf", "--seed", "9"},
      &o);
  ASSERT_TRUE(out.run) << out.text;
  EXPECT_EQ(o.mf.dim, 16);
  EXPECT_EQ(o.mf.epochs, 3);
  EXPECT_EQ(o.optimizer.kind, kernels::OptimizerKind::kSgd);
  EXPECT_FLOAT_EQ(o.optimizer.lr, 0.01f);
  EXPECT_EQ(o.servers, 2);
  EXPECT_EQ(o.workers, 3);
  EXPECT_TRUE(o.workers_given);
  EXPECT_TRUE(o.deterministic);
  EXPECT_EQ(o.mf.format, worker::RatingFormat::kLibmf);
  EXPECT_EQ(o.init_seed, 9u);
  EXPECT_EQ(o.mf.compute_threads, 0);  // defaults: automatic (launch/job.cc)
  EXPECT_EQ(o.threads_per_shard, 0);
  EXPECT_TRUE(o.shared_memory);
  EXPECT_NE(o.summary.find("dim = 16"), std::string::npos) << o.summary;
  EXPECT_NE(o.summary.find("l2 = 0.09 (chosen for the data's size)"), std::string::npos)
      << o.summary;
}

TEST_F(FlagsTest, BadFlagsAndValuesExitWithStatusTwoAndOneClearLine) {
  const std::vector<std::vector<std::string>> bad = {
      {"--bogus"},
      {"--dim", "abc"},
      {"--dim", "0"},
      {"--epochs", "-1"},
      {"--lr", "0"},
      {"--format", "xml"},
      {"--optimizer", "adamw"},
      {"--device", "tpu"},
      {"--model", "xgboost"},
      {"--model", "deepfm", "--mlp", "400,x"},
      {"--model", "deepfm", "--dense-optimizer", "ftrl"},
      {"--model", "deepfm", "--dense-optimizer", "rowwise-adagrad"},
      {"--model", "deepfm", "--format", "tab"},
      {"--servers", "0"},
      {"--transport", "carrier-pigeon"},
      {"--shared-memory", "on"},
      {"--compute-threads", "3"},
      {"--compute-threads", "-1"},
      {"--threads-per-shard", "3"},
      {"--threads-per-shard", "-1"},
      {"--devices", "0"},  // without --device cuda|auto
      {"--device", "cuda", "--devices", "0,0"},
      {"--device", "auto", "--devices", "x"},
  };
  for (auto args : bad) {
    args.insert(args.begin(), {"--train", train_});
    TrainOptions o;
    ParseOutcome out = Parse(args, &o);
    EXPECT_FALSE(out.run) << args[2];
    EXPECT_EQ(out.exit_code, 2) << args[2];
    EXPECT_FALSE(out.text.empty());
    EXPECT_EQ(out.text.find('\n'), std::string::npos) << out.text;
  }
}

// The CUDA kernels have a deterministic mode (no float atomics), so the pair is a valid request,
// not one that would silently train with atomics. Whether a device exists is checked at start-up.
TEST_F(FlagsTest, AuthKeyAndInsecureAreKeptAndExcludeEachOther) {
  TrainOptions o;
  ParseOutcome out = Parse({"--train", train_, "--auth-key", "/some/job.key"}, &o);
  ASSERT_TRUE(out.run) << out.text;
  EXPECT_EQ(o.auth_key_path, "/some/job.key");
  EXPECT_FALSE(o.insecure);
  TrainOptions insecure;
  ASSERT_TRUE(Parse({"--train", train_, "--insecure"}, &insecure).run);
  EXPECT_TRUE(insecure.insecure);
  TrainOptions both;
  out = Parse({"--train", train_, "--insecure", "--auth-key", "k"}, &both);
  EXPECT_FALSE(out.run);
  EXPECT_EQ(out.exit_code, 2);
  EXPECT_NE(out.text.find("exclude each other"), std::string::npos) << out.text;
  std::string key_out;
  out = ParseKeygenOptions({}, &key_out);
  EXPECT_EQ(out.exit_code, 2);  // --out is required
  ASSERT_TRUE(ParseKeygenOptions({"--out", "k"}, &key_out).run);
  EXPECT_EQ(key_out, "k");
}

TEST_F(FlagsTest, DeterministicIsAcceptedWithDeviceCuda) {
  TrainOptions o;
  ParseOutcome out = Parse({"--train", train_, "--deterministic", "--device", "cuda"}, &o);
  ASSERT_TRUE(out.run) << out.text;
  EXPECT_TRUE(o.deterministic);
  EXPECT_EQ(o.device, DeviceChoice::kCuda);
}

TEST_F(FlagsTest, DeviceAutoAndTheDeviceListAreKeptForTheJobToResolve) {
  TrainOptions o;
  ParseOutcome out = Parse({"--train", train_, "--device", "auto", "--devices", "2,0"}, &o);
  ASSERT_TRUE(out.run) << out.text;
  EXPECT_EQ(o.device, DeviceChoice::kAuto);
  EXPECT_EQ(o.devices, std::vector<int>({2, 0}));
  EXPECT_EQ(o.mf.device, kernels::Device::kCpu);  // until the job resolves auto
  out = Parse({"--train", train_, "--device", "cuda"}, &o);
  ASSERT_TRUE(out.run) << out.text;
  EXPECT_EQ(o.device, DeviceChoice::kCuda);
  EXPECT_EQ(o.mf.device, kernels::Device::kCuda);
}

TEST_F(FlagsTest, CtrModelsTakeTheCudaDeviceAndTf32OnlyWhenAsked) {
  TrainOptions o;
  ParseOutcome out = Parse({"--train", train_, "--model", "deepfm", "--device", "cuda"}, &o);
  ASSERT_TRUE(out.run) << out.text;
  EXPECT_EQ(o.mf.device, kernels::Device::kCuda);
  EXPECT_FALSE(o.ctr_options.allow_tf32);
  TrainOptions tf32;
  out = Parse({"--train", train_, "--model", "dcn_v2", "--device", "cuda", "--allow-tf32"}, &tf32);
  ASSERT_TRUE(out.run) << out.text;
  EXPECT_TRUE(tf32.ctr_options.allow_tf32);
}

TEST_F(FlagsTest, SharedMemoryCanBeTurnedOff) {
  TrainOptions o;
  ParseOutcome out = Parse({"--train", train_, "--shared-memory", "off"}, &o);
  ASSERT_TRUE(out.run) << out.text;
  EXPECT_FALSE(o.shared_memory);
}

TEST_F(FlagsTest, MissingDataFilesAreReportedByName) {
  TrainOptions o;
  ParseOutcome out = Parse({"--train", dir_.Join("nope.txt")}, &o);
  EXPECT_EQ(out.exit_code, 2);
  EXPECT_NE(out.text.find("nope.txt"), std::string::npos);
  out = Parse({"--train", train_, "--test", dir_.Join("missing-test.txt")}, &o);
  EXPECT_EQ(out.exit_code, 2);
  EXPECT_NE(out.text.find("missing-test.txt"), std::string::npos);
}

TEST_F(FlagsTest, HelpListsTheOptionsAndExitsZero) {
  TrainOptions o;
  ParseOutcome out = Parse({"--help"}, &o);
  EXPECT_FALSE(out.run);
  EXPECT_EQ(out.exit_code, 0);
  EXPECT_NE(out.text.find("--batch-size"), std::string::npos);
}

TEST_F(FlagsTest, ConfigFileSectionsAreReadAndFlagsOverrideThem) {
  const std::string config = dir_.Join("job.ini");
  WriteFile(config,
            "# a job\n[model]\ndim = 8\nl2 = 0.5\n[train]\nepochs = 4\ntrain = " + train_ + "\n");
  TrainOptions o;
  ParseOutcome out = Parse({"--config", config, "--epochs", "7"}, &o);
  ASSERT_TRUE(out.run) << out.text;
  EXPECT_EQ(o.mf.dim, 8);
  EXPECT_FLOAT_EQ(o.mf.l2, 0.5f);
  EXPECT_EQ(o.mf.epochs, 7);  // the flag wins
  EXPECT_EQ(o.mf.train_path, train_);
  EXPECT_FALSE(o.embedded_default);
}

TEST_F(FlagsTest, ConfigFileWithUnknownKeyOrBadValueIsRefused) {
  const std::string config = dir_.Join("bad.ini");
  WriteFile(config, "[model]\ndimension = 8\n");
  TrainOptions o;
  ParseOutcome out = Parse({"--train", train_, "--config", config}, &o);
  EXPECT_EQ(out.exit_code, 2);
  EXPECT_NE(out.text.find("model.dimension"), std::string::npos) << out.text;
  WriteFile(config, "[model]\ndim = eight\n");
  out = Parse({"--train", train_, "--config", config}, &o);
  EXPECT_EQ(out.exit_code, 2);
  out = Parse({"--train", train_, "--config", dir_.Join("absent.ini")}, &o);
  EXPECT_EQ(out.exit_code, 2);
  EXPECT_NE(out.text.find("absent.ini"), std::string::npos);
}

TEST_F(FlagsTest, ConfigThatIsAFifoOrADirectoryIsRefusedAtOnce) {
  // A FIFO without a writer: opening it would block this test forever.
  const std::string fifo = dir_.Join("config.fifo");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  TrainOptions o;
  ParseOutcome out = Parse({"--train", train_, "--config", fifo}, &o);
  EXPECT_FALSE(out.run);
  EXPECT_EQ(out.exit_code, 2);
  EXPECT_NE(out.text.find("--config " + fifo + " is not a regular file"), std::string::npos)
      << out.text;
  // A directory opens and reads as an empty file.
  out = Parse({"--train", train_, "--config", dir_.path()}, &o);
  EXPECT_FALSE(out.run);
  EXPECT_EQ(out.exit_code, 2);
  EXPECT_NE(out.text.find("--config " + dir_.path() + " is a directory"), std::string::npos)
      << out.text;
}

TEST_F(FlagsTest, CtrModelsGetTheirOwnDefaultsAndFlags) {
  TrainOptions o;
  ParseOutcome out =
      Parse({"--model", "dcn_v2", "--train", train_, "--mlp", "64,32", "--cross-layers", "2",
             "--emb-dim", "8", "--eval-every", "100", "--format", "criteo", "--hash-seed", "3"},
            &o);
  ASSERT_TRUE(out.run) << out.text;
  EXPECT_TRUE(o.ctr);
  EXPECT_EQ(o.ctr_options.model.kind, worker::CtrModelKind::kDcnV2);
  EXPECT_EQ(o.ctr_options.model.mlp, (std::vector<int>{64, 32}));
  EXPECT_EQ(o.ctr_options.model.cross_layers, 2);
  EXPECT_EQ(o.ctr_options.model.emb_dim, 8);
  EXPECT_EQ(o.ctr_options.eval_every, 100);
  EXPECT_EQ(o.ctr_options.read.format, worker::CtrFormat::kCriteo);
  EXPECT_EQ(o.ctr_options.read.hash_seed, 3u);
  EXPECT_EQ(o.ctr_options.train_path, train_);
  // CTR defaults: sparse lazy Adam at 0.001, FTRL first order; batch and epochs for the file's
  // size (a tiny one here: the smallest batch, a fixed number of epochs).
  EXPECT_EQ(o.optimizer.kind, kernels::OptimizerKind::kAdam);
  EXPECT_FLOAT_EQ(o.optimizer.lr, 0.001f);
  EXPECT_EQ(o.ctr_options.epochs, ChooseCtrDefaults(2).epochs);
  EXPECT_EQ(o.ctr_options.batch_size, 256);
  EXPECT_EQ(o.ctr_options.early_stop, 0);
  EXPECT_EQ(o.linear_optimizer.kind, kernels::OptimizerKind::kFtrl);
  EXPECT_EQ(o.ctr_options.dense_optimizer.kind, kernels::OptimizerKind::kAdam);
}

TEST_F(FlagsTest, MfOnCudaTakesTheDeviceBatchSizeUnlessOneIsGiven) {
  TrainOptions gpu;
  ParseOutcome out = Parse({"--train", train_, "--device", "cuda"}, &gpu);
  ASSERT_TRUE(out.run) << out.text;
  EXPECT_EQ(gpu.mf.batch_size, worker::kMfCudaDefaultBatchSize);
  EXPECT_NE(gpu.summary.find("batch-size = 8192 (default for --device cuda)"), std::string::npos)
      << gpu.summary;
  TrainOptions given;
  out = Parse({"--train", train_, "--device", "cuda", "--batch-size", "100"}, &given);
  ASSERT_TRUE(out.run) << out.text;
  EXPECT_EQ(given.mf.batch_size, 100);
  TrainOptions cpu;
  out = Parse({"--train", train_}, &cpu);
  ASSERT_TRUE(out.run) << out.text;
  // On the CPU the batch size is chosen for the data's size (launch/auto_defaults.h).
  EXPECT_EQ(cpu.mf.batch_size, ChooseMfDefaults(1).batch_size);
  // The embedded demo keeps its tuned preset on either device.
  TrainOptions demo;
  out = Parse({"--device", "cuda"}, &demo);
  ASSERT_TRUE(out.run) << out.text;
  EXPECT_EQ(demo.mf.batch_size, 256);
}

TEST_F(FlagsTest, CtrModelNeedsTrainingData) {
  TrainOptions o;
  ParseOutcome out = Parse({"--model", "deepfm"}, &o);
  EXPECT_EQ(out.exit_code, 2);
  EXPECT_NE(out.text.find("--train"), std::string::npos);
}

TEST(GenFlagsTest, OutIsRequiredAndValuesAreValidated) {
  worker::RatingGenOptions o;
  std::string out_dir;
  EXPECT_EQ(ParseGenRatingsOptions({}, &o, &out_dir).exit_code, 2);
  EXPECT_EQ(ParseGenRatingsOptions({"--out", "/tmp/x", "--rank", "0"}, &o, &out_dir).exit_code, 2);
  worker::RatingGenOptions ok;
  ParseOutcome out =
      ParseGenRatingsOptions({"--out", "/tmp/x", "--users", "50", "--noise", "0.2"}, &ok, &out_dir);
  ASSERT_TRUE(out.run) << out.text;
  EXPECT_EQ(ok.users, 50);
  EXPECT_DOUBLE_EQ(ok.noise, 0.2);
  EXPECT_EQ(out_dir, "/tmp/x");
}

}  // namespace
}  // namespace tessera::launch
