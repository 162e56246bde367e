#include "core/auth.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <set>

#include "tests/testing/test_util.h"

namespace tessera::auth {
namespace {

using testing::TempDir;

mode_t ModeOf(const std::string& path) {
  struct stat st;
  EXPECT_EQ(stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

TEST(AuthTest, KeygenWritesAnOwnerOnlyFileThatReadsBackTheSameSecret) {
  TempDir dir;
  auto secret = GenerateSecret();
  ASSERT_TRUE(secret.ok());
  const std::string path = dir.Join("job.key");
  ASSERT_TRUE(WriteKeyFile(path, *secret).ok());
  EXPECT_EQ(ModeOf(path), 0600u);
  auto read = ReadKeyFile(path);
  ASSERT_TRUE(read.ok()) << read.status().message();
  EXPECT_EQ(read->bytes, secret->bytes);
  // Nothing but the key file is left in the directory (the temporary name is gone).
  EXPECT_EQ(testing::ReadFile(path).size(), 18u + 64u + 1u);
}

TEST(AuthTest, KeygenNeverReplacesAnExistingFile) {
  TempDir dir;
  const std::string path = dir.Join("taken");
  testing::WriteFile(path, "precious\n");
  auto secret = GenerateSecret();
  ASSERT_TRUE(secret.ok());
  Status s = WriteKeyFile(path, *secret);
  EXPECT_EQ(s.code(), StatusCode::kAlreadyExists);
  EXPECT_NE(s.message().find(path), std::string::npos);
  EXPECT_EQ(testing::ReadFile(path), "precious\n");
}

TEST(AuthTest, KeyFilesReadableByGroupOrOthersAreRefused) {
  TempDir dir;
  auto secret = GenerateSecret();
  ASSERT_TRUE(secret.ok());
  for (mode_t mode : {0640, 0604, 0660, 0620}) {
    const std::string path = dir.Join("key" + std::to_string(mode));
    ASSERT_TRUE(WriteKeyFile(path, *secret).ok());
    ASSERT_EQ(chmod(path.c_str(), mode), 0);
    auto read = ReadKeyFile(path);
    EXPECT_EQ(read.status().code(), StatusCode::kInvalidArgument) << mode;
    EXPECT_NE(read.status().message().find("chmod 600"), std::string::npos)
        << read.status().message();
    EXPECT_NE(read.status().message().find(path), std::string::npos);
  }
}

TEST(AuthTest, KeyFilesOfTheWrongSizeOrFormatAreRefused) {
  TempDir dir;
  const std::string hex64(64, 'a');
  const std::vector<std::string> bad = {
      "",
      hex64 + "\n",                                         // no magic
      "tessera-job-key-1 " + hex64,                         // no newline
      "tessera-job-key-1 " + hex64.substr(2) + "\n",        // short
      "tessera-job-key-1 " + hex64 + "aa\n",                // long
      "tessera-job-key-1 " + std::string(63, 'a') + "g\n",  // not hex
      "tessera-job-key-1 " + std::string(64, 'A') + "\n",   // upper case
      "tessera-job-key-2 " + hex64 + "\n",                  // another version
  };
  for (size_t i = 0; i < bad.size(); ++i) {
    const std::string path = dir.Join("bad" + std::to_string(i));
    testing::WriteFile(path, bad[i]);
    ASSERT_EQ(chmod(path.c_str(), 0600), 0);
    auto read = ReadKeyFile(path);
    EXPECT_EQ(read.status().code(), StatusCode::kInvalidArgument) << i;
    EXPECT_NE(read.status().message().find("not a Tessera key file"), std::string::npos) << i;
  }
  const std::string good = dir.Join("good");
  testing::WriteFile(good, "tessera-job-key-1 " + hex64 + "\n");
  ASSERT_EQ(chmod(good.c_str(), 0600), 0);
  auto read = ReadKeyFile(good);
  ASSERT_TRUE(read.ok()) << read.status().message();
  EXPECT_EQ(read->bytes[0], 0xaa);
}

TEST(AuthTest, MissingFilesAndDirectoriesAreRefused) {
  TempDir dir;
  EXPECT_EQ(ReadKeyFile(dir.Join("nope")).status().code(), StatusCode::kNotFound);
  ASSERT_EQ(chmod(dir.path().c_str(), 0700), 0);
  EXPECT_EQ(ReadKeyFile(dir.path()).status().code(), StatusCode::kInvalidArgument);
}

TEST(AuthTest, NodeKeyPairsAreDeterministicAndDistinctPerNodeAndSecret) {
  auto a = GenerateSecret(), b = GenerateSecret();
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_NE(a->bytes, b->bytes);
  std::set<std::string> public_keys;
  for (const NodeId& node : {NodeId::Scheduler(), NodeId::Server(0), NodeId::Server(1),
                             NodeId::Worker(0), NodeId::Worker(1)}) {
    const KeyPair first = NodeKeyPair(*a, node), again = NodeKeyPair(*a, node);
    EXPECT_EQ(first.public_key, again.public_key);
    EXPECT_EQ(first.secret_key, again.secret_key);
    EXPECT_NE(first.public_key, first.secret_key);
    EXPECT_EQ(Z85(first.public_key).size(), 40u);
    public_keys.insert(Z85(first.public_key));
    public_keys.insert(Z85(NodeKeyPair(*b, node).public_key));
  }
  EXPECT_EQ(public_keys.size(), 10u);
}

}  // namespace
}  // namespace tessera::auth
