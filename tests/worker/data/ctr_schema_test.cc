// CtrSchema's vocabulary (worker/data/ctr_schema.h): format names, HashFeature's keys, the
// Criteo integer buckets, the value rule of a row (ValidateCtrRecord) and the held-out rows of
// early stopping (HoldOutCtrRows).
#include "worker/data/ctr_schema.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <set>
#include <string>
#include <string_view>

namespace tessera::worker {
namespace {

TEST(CtrFormatTest, NamesRoundTripThroughParse) {
  for (CtrFormat f : {CtrFormat::kAuto, CtrFormat::kCriteo, CtrFormat::kLibsvm, CtrFormat::kLibffm,
                      CtrFormat::kCache}) {
    StatusOr<CtrFormat> parsed = ParseCtrFormat(CtrFormatName(f));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, f);
  }
}

TEST(CtrFormatTest, UnknownNameIsInvalidArgumentListingChoices) {
  StatusOr<CtrFormat> parsed = ParseCtrFormat("parquet");
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(parsed.status().message().find("auto, criteo, libsvm, libffm, cache"),
            std::string::npos);
}

// Golden values computed by an independent Python implementation of
// M(M(seed ^ M(field)) ^ FNV-1a-64(value)), M the SplitMix64 finaliser (M(0) is SplitMix64's
// published first output 0xe220a8397b1dcdaf, FNV-1a-64("a") = 0xaf63dc4c8601ec8c).
TEST(HashFeatureTest, StringKeysMatchGoldenValues) {
  EXPECT_EQ(HashFeature(0, 0, std::string_view("")), 0x7dc2c42b173ebf65ULL);
  EXPECT_EQ(HashFeature(0, 0, std::string_view("68fd1e64")), 0x4bc693bf6c9f1963ULL);
  EXPECT_EQ(HashFeature(0, 25, std::string_view("68fd1e64")), 0x2ea436fa4efebcb3ULL);
  EXPECT_EQ(HashFeature(42, 3, std::string_view("80e26c9b")), 0xd66021da610ca378ULL);
  EXPECT_EQ(HashFeature(0xdeadbeefcafef00dULL, 7, std::string_view("hello world")),
            0xbd12248330abb852ULL);
}

TEST(HashFeatureTest, NumericKeysMatchGoldenValues) {
  EXPECT_EQ(HashFeature(0, 0, uint64_t{0}), 0x238275bc38fcbe91ULL);
  EXPECT_EQ(HashFeature(0, 1, uint64_t{5041}), 0xda941f541e89857eULL);
  EXPECT_EQ(HashFeature(42, 30, uint64_t{3}), 0x5f5a44eb1f35c31dULL);
  EXPECT_EQ(HashFeature(0, 0, ~uint64_t{0}), 0xb6fe22f87b0fa15aULL);
}

TEST(HashFeatureTest, SeedAndFieldGiveSeparateKeySpaces) {
  uint64_t key = HashFeature(1, 2, std::string_view("abc"));
  EXPECT_NE(key, HashFeature(2, 2, std::string_view("abc")));
  EXPECT_NE(key, HashFeature(1, 3, std::string_view("abc")));
  EXPECT_NE(key, HashFeature(1, 2, std::string_view("abd")));
  EXPECT_EQ(key, HashFeature(1, 2, std::string_view("abc")));
}

TEST(HashFeatureTest, NumericValuesOfOneFieldNeverCollide) {
  std::set<uint64_t> keys;
  for (uint64_t v = 0; v < 100000; ++v) keys.insert(HashFeature(7, 3, v));
  EXPECT_EQ(keys.size(), 100000u);
}

TEST(CriteoBucketTest, SmallValuesAreTheirOwnBuckets) {
  for (int64_t x : {std::numeric_limits<int64_t>::min(), int64_t{-3}, int64_t{-1}, int64_t{0},
                    int64_t{1}, int64_t{2}}) {
    EXPECT_EQ(CriteoBucket(x), x);
  }
}

TEST(CriteoBucketTest, LargerValuesAreTwoPlusFloorOfLogSquared) {
  for (int64_t x = 3; x < 100000; ++x) {
    double l = std::log(static_cast<double>(x));
    ASSERT_EQ(CriteoBucket(x), 2 + static_cast<int64_t>(std::floor(l * l))) << x;
  }
}

TEST(CriteoBucketTest, BucketEdgesAreExactAndCappedAt493) {
  // ceil(e^sqrt(b)) computed with 60-digit decimals.
  struct Edge {
    int64_t b;
    int64_t x;
  };
  for (Edge e : {Edge{1, 3}, Edge{2, 5}, Edge{12, 32}, Edge{100, 22027}, Edge{473, 2787924282},
                 Edge{490, 4106938188}, Edge{491, 4200711725}}) {
    EXPECT_EQ(CriteoBucket(e.x), 2 + e.b) << e.x;
    if (e.x > 3) {
      EXPECT_EQ(CriteoBucket(e.x - 1), 1 + e.b) << e.x - 1;
    }
  }
  EXPECT_EQ(CriteoBucket(std::numeric_limits<int64_t>::max()), 493);
}

TEST(ValidateCtrRecordTest, AcceptsBinaryLabelsAndBoundedFiniteValues) {
  const float dense[] = {0.0f, -3.5f, kMaxAbsDataValue, -kMaxAbsDataValue};
  const float values[] = {1.0f, 0.0f, 2.5e5f};
  EXPECT_TRUE(ValidateCtrRecord(0.0f, dense, 4, values, 3).ok());
  EXPECT_TRUE(ValidateCtrRecord(1.0f, dense, 4, values, 3).ok());
  EXPECT_TRUE(ValidateCtrRecord(1.0f, nullptr, 0, nullptr, 0).ok());
}

TEST(ValidateCtrRecordTest, RefusesLabelsOtherThanZeroAndOne) {
  for (float label : {2.0f, -7.0f, 0.5f, -1.0f, NAN, INFINITY}) {
    Status s = ValidateCtrRecord(label, nullptr, 0, nullptr, 0);
    ASSERT_FALSE(s.ok()) << label;
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find("is not 0 or 1"), std::string::npos) << s.message();
  }
  EXPECT_EQ(ValidateCtrRecord(2.0f, nullptr, 0, nullptr, 0).message(), "label 2 is not 0 or 1");
}

TEST(ValidateCtrRecordTest, NamesTheFirstNonFiniteOrOutOfRangeValue) {
  const float dense[] = {1.0f, 2.0f, NAN, INFINITY};
  EXPECT_EQ(ValidateCtrRecord(1.0f, dense, 4, nullptr, 0).message(), "dense feature 3 is nan");
  const float big[] = {1.0f, -3e38f};
  EXPECT_EQ(ValidateCtrRecord(0.0f, big, 2, nullptr, 0).message(),
            "dense feature 2 is -3e+38, beyond +-1e+06");
  const float values[] = {1.0f, 1.0f, 1.0f, -INFINITY};
  EXPECT_EQ(ValidateCtrRecord(0.0f, nullptr, 0, values, 4).message(), "value of feature 4 is -inf");
  const float just_over[] = {1.0000001e6f};
  EXPECT_FALSE(ValidateCtrRecord(0.0f, nullptr, 0, just_over, 1).ok());
}

TEST(DataValueTest, BoundIsInclusiveAndRefusesNonFinite) {
  EXPECT_TRUE(IsValidDataValue(0.0f));
  EXPECT_TRUE(IsValidDataValue(-1e6f));
  EXPECT_TRUE(IsValidDataValue(1e6f));
  EXPECT_FALSE(IsValidDataValue(1.0000001e6f));
  EXPECT_FALSE(IsValidDataValue(3e38f));
  EXPECT_FALSE(IsValidDataValue(NAN));
  EXPECT_FALSE(IsValidDataValue(-INFINITY));
}

// One-hot rows of 2 fields and 1 dense feature; row i's keys are {i, i % 7}, so every row but
// those given `dup` differs.
CtrBlock OneHotRows(int n, int dup = -1) {
  CtrBlock b;
  for (int i = 0; i < n; ++i) {
    const int r = i == dup ? 0 : i;  // `dup` repeats row 0
    b.labels.push_back(static_cast<float>(r % 3 == 0));
    b.dense.push_back(0.5f * static_cast<float>(r));
    b.keys.insert(b.keys.end(), {static_cast<uint64_t>(r), static_cast<uint64_t>(r % 7)});
    b.values.insert(b.values.end(), {1.0f, 1.0f});
  }
  return b;
}

TEST(HoldOutCtrRowsTest, MovesAboutTheFractionKeepingFileOrderAndEveryRowOnce) {
  const CtrBlock all = OneHotRows(20000);
  CtrBlock train = all, held;
  HoldOutCtrRows(0.1, 7, /*multi_hot=*/false, &train, &held);
  EXPECT_NEAR(static_cast<double>(held.size()), 2000.0, 200.0);
  ASSERT_EQ(train.size() + held.size(), all.size());
  // Each side in file order (the dense feature rises with the row), each row's fields intact.
  for (const CtrBlock* b : {&train, &held}) {
    ASSERT_EQ(b->dense.size(), b->size());
    ASSERT_EQ(b->keys.size(), 2 * b->size());
    for (size_t r = 0; r < b->size(); ++r) {
      const uint64_t row = b->keys[2 * r];
      EXPECT_EQ(b->keys[2 * r + 1], row % 7);
      EXPECT_EQ(b->dense[r], 0.5f * static_cast<float>(row));
      EXPECT_EQ(b->labels[r], static_cast<float>(row % 3 == 0));
      if (r > 0) {
        EXPECT_LT(b->keys[2 * (r - 1)], row);
      }
    }
  }
  CtrBlock none = all, none_held;
  HoldOutCtrRows(0, 7, false, &none, &none_held);
  EXPECT_EQ(none.size(), all.size());
  EXPECT_EQ(none_held.size(), 0u);
  // Another seed holds out other rows.
  CtrBlock other = all, other_held;
  HoldOutCtrRows(0.1, 8, false, &other, &other_held);
  EXPECT_NE(other_held.keys, held.keys);
}

TEST(HoldOutCtrRowsTest, ARowGoesTheSameWayInAnyPartitionAndDuplicatesGoTogether) {
  // Holding out of two halves (two workers' partitions) gives the rows of holding out of all.
  CtrBlock all = OneHotRows(4000), all_held;
  CtrBlock first = OneHotRows(4000), second, first_held, second_held;
  second.labels.assign(first.labels.begin() + 2000, first.labels.end());
  second.dense.assign(first.dense.begin() + 2000, first.dense.end());
  second.keys.assign(first.keys.begin() + 4000, first.keys.end());
  second.values.assign(first.values.begin() + 4000, first.values.end());
  first.labels.resize(2000);
  first.dense.resize(2000);
  first.keys.resize(4000);
  first.values.resize(4000);
  HoldOutCtrRows(0.2, 3, false, &all, &all_held);
  HoldOutCtrRows(0.2, 3, false, &first, &first_held);
  HoldOutCtrRows(0.2, 3, false, &second, &second_held);
  AppendCtrBlock(second_held, false, &first_held);
  EXPECT_EQ(first_held.keys, all_held.keys);
  EXPECT_EQ(first_held.labels, all_held.labels);
  // Row 999 repeats row 0: both sit on the same side.
  CtrBlock dup = OneHotRows(1000, 999), dup_held;
  HoldOutCtrRows(0.5, 11, false, &dup, &dup_held);
  const CtrBlock& side = dup.size() > 0 && dup.keys[0] == 0 ? dup : dup_held;
  ASSERT_FALSE(side.keys.empty());
  EXPECT_EQ(side.keys[0], 0u);
  EXPECT_EQ(side.keys[side.keys.size() - 2], 0u);  // its last row is the repeat of row 0
}

TEST(HoldOutCtrRowsTest, MultiHotRowsKeepTheirKeyListsAndOffsets) {
  CtrBlock train;
  train.offsets.push_back(0);
  for (int i = 0; i < 3000; ++i) {
    train.labels.push_back(static_cast<float>(i % 2));
    for (int k = 0; k <= i % 4; ++k) {  // 1 to 4 keys, each row's first key is its number
      train.keys.push_back(static_cast<uint64_t>(i + k * 100000));
      train.values.push_back(static_cast<float>(k + 1));
    }
    train.offsets.push_back(static_cast<uint32_t>(train.keys.size()));
  }
  CtrBlock held;
  held.offsets.push_back(0);
  HoldOutCtrRows(0.3, 5, /*multi_hot=*/true, &train, &held);
  EXPECT_NEAR(static_cast<double>(held.size()), 900.0, 120.0);
  for (const CtrBlock* b : {&train, &held}) {
    ASSERT_EQ(b->offsets.size(), b->size() + 1);
    ASSERT_EQ(b->offsets.back(), b->keys.size());
    for (size_t r = 0; r < b->size(); ++r) {
      const uint64_t row = b->keys[b->offsets[r]];
      ASSERT_EQ(b->offsets[r + 1] - b->offsets[r], row % 4 + 1) << "row " << row;
      EXPECT_EQ(b->labels[r], static_cast<float>(row % 2));
      EXPECT_EQ(b->values[b->offsets[r + 1] - 1], static_cast<float>(row % 4 + 1));
    }
  }
}

}  // namespace
}  // namespace tessera::worker
