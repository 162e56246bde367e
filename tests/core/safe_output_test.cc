#include "core/safe_output.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "tests/testing/test_util.h"

namespace tessera::safe_output {
namespace {

using testing::ReadFile;
using testing::TempDir;
using testing::WriteFile;

bool Mentions(const Status& s, const std::string& text) {
  return s.message().find(text) != std::string::npos;
}

TEST(SafeOutputTest, FileOutputThatIsAnInputIsRefusedHoweverItIsNamed) {
  TempDir dir;
  WriteFile(dir.Join("in.txt"), "1 2 3\n");
  Status same = CheckOutputFile(dir.Join("in.txt"), "--output", {{"--input", dir.Join("in.txt")}});
  EXPECT_EQ(same.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Mentions(same, "is the --input")) << same.message();
  // Another name for the same file: a symbolic link, a hard link, a path with "..".
  ASSERT_EQ(symlink(dir.Join("in.txt").c_str(), dir.Join("link").c_str()), 0);
  ASSERT_EQ(link(dir.Join("in.txt").c_str(), dir.Join("hard").c_str()), 0);
  std::filesystem::create_directory(dir.Join("sub"));
  for (const std::string& alias : {dir.Join("link"), dir.Join("hard"), dir.Join("sub/../in.txt")}) {
    EXPECT_FALSE(CheckOutputFile(alias, "--output", {{"--input", dir.Join("in.txt")}}).ok())
        << alias;
  }
  EXPECT_TRUE(
      CheckOutputFile(dir.Join("out.bin"), "--output", {{"--input", dir.Join("in.txt")}}).ok());
  EXPECT_EQ(ReadFile(dir.Join("in.txt")), "1 2 3\n");
}

TEST(SafeOutputTest, DeviceRootDirectoryAndMissingDirectoryAreRefusedAsFileOutputs) {
  TempDir dir;
  Status device = CheckOutputFile("/dev/null", "--output", {});
  EXPECT_EQ(device.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Mentions(device, "character device")) << device.message();
  EXPECT_TRUE(Mentions(CheckOutputFile("/", "--out", {}), "root directory"));
  EXPECT_TRUE(Mentions(CheckOutputFile(dir.path(), "--output", {}), "a directory"));
  EXPECT_TRUE(
      Mentions(CheckOutputFile(dir.Join("no/such/file"), "--output", {}), "does not exist"));
  ASSERT_EQ(mkfifo(dir.Join("fifo").c_str(), 0600), 0);
  EXPECT_TRUE(Mentions(CheckOutputFile(dir.Join("fifo"), "--output", {}), "FIFO"));
  // The refusal comes before anything is written: /dev/null is still a device.
  EXPECT_FALSE(WriteFileAtomically("/dev/null", "--metrics-out", "x\n").ok());
  struct stat st;
  ASSERT_EQ(stat("/dev/null", &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
}

TEST(SafeOutputTest, AtomicWriteReplacesTheFileWholeAndLeavesNoTemporary) {
  TempDir dir;
  const std::string path = dir.Join("m.jsonl");
  ASSERT_TRUE(WriteFileAtomically(path, "--metrics-out", "a\n").ok());
  ASSERT_TRUE(WriteFileAtomically(path, "--metrics-out", "a\nb\n").ok());
  EXPECT_EQ(ReadFile(path), "a\nb\n");
  size_t entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path()))
    entries += !e.is_directory();
  EXPECT_EQ(entries, 1u);
}

TEST(SafeOutputTest, NonEmptyDirectoryWithoutMarkerIsRefusedAndAMarkedOneAccepted) {
  TempDir dir;
  const std::string out = dir.Join("export");
  EXPECT_TRUE(CheckOutputDir(out, "--out", "export", {}).ok());  // does not exist yet
  std::filesystem::create_directory(out);
  EXPECT_TRUE(CheckOutputDir(out, "--out", "export", {}).ok());  // empty
  WriteFile(out + "/precious.txt", "keep me");
  Status foreign = CheckOutputDir(out, "--out", "export", {});
  EXPECT_EQ(foreign.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Mentions(foreign, "Tessera did not write")) << foreign.message();
  EXPECT_TRUE(Mentions(CheckOutputDir("/", "--out", "export", {}), "root directory"));
  EXPECT_TRUE(Mentions(CheckOutputDir("/dev/null", "--out", "export", {}), "not a directory"));

  const std::string ours = dir.Join("ours");
  ASSERT_TRUE(PrepareOutputDir(ours, "--out", "export", {}).ok());
  EXPECT_EQ(ReadFile(ours + "/" + kMarkerName), "tessera export\n");
  WriteFile(ours + "/model.json", "{}");
  EXPECT_TRUE(CheckOutputDir(ours, "--out", "export", {}).ok());
  // A marker of another kind: another Tessera output, not to be replaced by this one.
  EXPECT_TRUE(Mentions(CheckOutputDir(ours, "--checkpoint-dir", "checkpoints", {}),
                       "another Tessera output"));
  // A directory that holds an input of the command.
  EXPECT_TRUE(
      Mentions(CheckOutputDir(ours, "--out", "export", {{"--checkpoint", ours + "/model.json"}}),
               "holds the --checkpoint"));
  // Adopted by a recogniser (a checkpoint root written before markers existed).
  auto all_step = [](const std::vector<std::string>& names) {
    for (const auto& n : names) {
      if (n.rfind("step-", 0) != 0) return false;
    }
    return true;
  };
  std::filesystem::create_directories(dir.Join("old/step-5"));
  EXPECT_TRUE(
      CheckOutputDir(dir.Join("old"), "--checkpoint-dir", "checkpoints", {}, all_step).ok());
  EXPECT_FALSE(CheckOutputDir(out, "--checkpoint-dir", "checkpoints", {}, all_step).ok());
}

TEST(SafeOutputTest, ReplaceDirSwapsAStagedDirectoryIntoPlace) {
  TempDir dir;
  const std::string out = dir.Join("export");
  const std::string staged = TemporaryPathFor(out);
  EXPECT_EQ(std::filesystem::path(staged).parent_path().string(), dir.path());
  ASSERT_TRUE(PrepareOutputDir(staged, "--out", "export", {}).ok());
  WriteFile(staged + "/v", "1");
  ASSERT_TRUE(ReplaceDir(staged, out, "--out").ok());
  EXPECT_EQ(ReadFile(out + "/v"), "1");
  ASSERT_TRUE(PrepareOutputDir(staged, "--out", "export", {}).ok());
  WriteFile(staged + "/w", "2");
  ASSERT_TRUE(ReplaceDir(staged, out, "--out").ok());
  EXPECT_EQ(ReadFile(out + "/w"), "2");
  EXPECT_FALSE(std::filesystem::exists(out + "/v"));  // the old export is gone, whole
  size_t entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path()))
    entries += !e.path().empty();
  EXPECT_EQ(entries, 1u);
}

}  // namespace
}  // namespace tessera::safe_output
