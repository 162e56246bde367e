#include "worker/metrics_writer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "tests/testing/test_util.h"

namespace tessera::worker {
namespace {

using testing::ReadFile;
using testing::TempDir;
using testing::WriteFile;

// The defect: a NaN model ended with `"rmse":null` in the metrics and exit 0.
TEST(MetricsWriterTest, NonFiniteMetricIsRefusedAndNothingOfItsRecordIsWritten) {
  TempDir dir;
  const std::string path = dir.Join("m.jsonl");
  MetricsWriter writer;
  ASSERT_TRUE(writer.Open(path).ok());
  ASSERT_TRUE(writer.Train(1, 0.5, 1000).ok());
  const std::string before = ReadFile(path);
  Status eval = writer.Eval(1, -1, "test", {{"rmse", NAN}, {"mae", 0.7}});
  EXPECT_EQ(eval.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(eval.message().find("rmse is nan; a metric is never written as null or nan"),
            std::string::npos)
      << eval.message();
  EXPECT_NE(eval.message().find(path), std::string::npos);
  Status done = writer.Done(1, {{"auc", INFINITY}}, 1.0, 1000, {});
  EXPECT_FALSE(done.ok());
  EXPECT_FALSE(writer.Train(2, NAN, 1000).ok());
  EXPECT_EQ(ReadFile(path), before);
  EXPECT_EQ(before.find("null"), std::string::npos);
  EXPECT_EQ(before.find("nan"), std::string::npos);
}

TEST(MetricsWriterTest, EveryRecordIsInTheFileAtOnceAndAResumeAppends) {
  TempDir dir;
  const std::string path = dir.Join("m.jsonl");
  {
    MetricsWriter writer;
    ASSERT_TRUE(writer.Open(path).ok());
    ASSERT_TRUE(writer.Train(1, 0.25, 10).ok());
    EXPECT_EQ(ReadFile(path),
              "{\"event\":\"train\",\"epoch\":1,\"loss\":0.25,\"samples_per_sec\":10}\n");
  }
  MetricsWriter resumed;
  ASSERT_TRUE(resumed.Open(path, /*append=*/true).ok());
  ASSERT_TRUE(resumed.Done(2, {}, 1.5, 10, {{"fake", "true"}}).ok());
  ASSERT_TRUE(resumed.Close().ok());
  EXPECT_EQ(ReadFile(path),
            "{\"event\":\"train\",\"epoch\":1,\"loss\":0.25,\"samples_per_sec\":10}\n"
            "{\"event\":\"done\",\"epochs\":2,\"train_seconds\":1.5,\"samples_per_sec\":10,"
            "\"fake\":true}\n");
  size_t entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path()))
    entries += !e.path().empty();
  EXPECT_EQ(entries, 1u);  // no temporary file left
}

TEST(MetricsWriterTest, DeviceOrDirectoryIsRefusedAtOpen) {
  TempDir dir;
  MetricsWriter writer;
  EXPECT_EQ(writer.Open("/dev/null").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(writer.Open(dir.path()).code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tessera::worker
