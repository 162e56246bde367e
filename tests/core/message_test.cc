#include "core/message.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

namespace tessera {
namespace {

TableLayout TwoTables() { return TableLayout{{4, 2}}; }  // table 0: 4 floats, table 1: 2

Message Pull(std::vector<uint64_t> keys0, std::vector<uint64_t> keys1) {
  Message m;
  m.header.set_command(proto::COMMAND_PULL);
  m.header.set_dtype(proto::DTYPE_FLOAT32);
  auto* t0 = m.header.add_tables();
  t0->set_table_id(0);
  t0->set_num_keys(keys0.size());
  auto* t1 = m.header.add_tables();
  t1->set_table_id(1);
  t1->set_num_keys(keys1.size());
  keys0.insert(keys0.end(), keys1.begin(), keys1.end());
  m.frames.push_back(Frame::FromVector(std::move(keys0)));
  return m;
}

Message Push(std::vector<uint64_t> keys0, std::vector<uint64_t> keys1) {
  Message m = Pull(keys0, keys1);
  m.header.set_command(proto::COMMAND_PUSH);
  std::vector<float> grads(keys0.size() * 4 + keys1.size() * 2, 0.5f);
  m.frames.push_back(Frame::FromVector(std::move(grads)));
  return m;
}

TEST(FrameTest, CopySharesNothingWithTheSource) {
  std::vector<int> v = {1, 2, 3};
  Frame f = Frame::Copy(v.data(), v.size() * sizeof(int));
  v[0] = 99;
  EXPECT_EQ(f.as<int>()[0], 1);
  EXPECT_EQ(f.count<int>(), 3u);
  EXPECT_TRUE(f.IsAligned(64));
}

TEST(FrameTest, FromVectorTakesTheBufferWithoutCopying) {
  std::vector<float> v(1000, 1.5f);
  const float* data = v.data();
  Frame f = Frame::FromVector(std::move(v));
  EXPECT_EQ(f.as<float>(), data);
  Frame shared = f;  // copies of a Frame share the bytes
  EXPECT_EQ(shared.data(), f.data());
}

// Large frames come from a cache of freed blocks: a frame freed is handed out again, a live one
// never is, and every size gets a 64-byte aligned block it may fill completely.
TEST(FrameTest, LargeFramesReuseFreedBlocksButNeverLiveOnes) {
  for (size_t size :
       {size_t{300} << 10, size_t{4} << 20, (size_t{4} << 20) + 1, size_t{33} << 20}) {
    void* first = nullptr;
    Frame a = Frame::Allocate(size, &first);
    ASSERT_EQ(a.size(), size);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(first) % 64, 0u);
    std::memset(first, 0xab, size);
    void* second = nullptr;
    Frame b = Frame::Allocate(size, &second);
    EXPECT_NE(first, second) << "a live frame's block was handed out again";
    std::memset(second, 0xcd, size);
    EXPECT_EQ(static_cast<const unsigned char*>(a.data())[size - 1], 0xab);
    const void* freed = a.data();
    a = Frame();
    void* third = nullptr;
    Frame c = Frame::Allocate(size, &third);
    EXPECT_EQ(third, freed) << "the freed block was not reused";
    std::memset(third, 0xef, size);
    EXPECT_EQ(static_cast<const unsigned char*>(b.data())[0], 0xcd);
  }
}

TEST(FrameTest, AlignedCopiesOnlyMisalignedFrames) {
  std::vector<char> bytes(64, 7);
  auto owner = std::make_shared<std::vector<char>>(bytes);
  Frame odd = Frame::Wrap(owner, owner->data() + 1, 16);
  ASSERT_FALSE(odd.IsAligned(8));
  Frame fixed = odd.Aligned(8);
  EXPECT_TRUE(fixed.IsAligned(8));
  EXPECT_EQ(std::memcmp(fixed.data(), odd.data(), 16), 0);
  Frame good = Frame::Copy(bytes.data(), 16);
  EXPECT_EQ(good.Aligned(8).data(), good.data());
}

TEST(MessageTest, HeaderRoundTripsThroughItsWireEncoding) {
  Message m = Push({1, 2}, {3});
  m.header.set_request_id(77);
  m.header.set_clock(12);
  Frame wire = EncodeProto(m.header);
  proto::Header decoded;
  ASSERT_TRUE(DecodeProto(wire, &decoded).ok());
  EXPECT_EQ(decoded.request_id(), 77u);
  EXPECT_EQ(decoded.clock(), 12);
  EXPECT_EQ(decoded.command(), proto::COMMAND_PUSH);
  ASSERT_EQ(decoded.tables_size(), 2);
  EXPECT_EQ(decoded.tables(1).num_keys(), 1u);
}

TEST(MessageTest, GarbageHeaderIsDataLoss) {
  const char garbage[] = "\xff\xff\xff\xff\xff\xff";
  proto::Header h;
  EXPECT_EQ(DecodeProto(garbage, sizeof(garbage), &h).code(), StatusCode::kDataLoss);
}

TEST(MessageTest, ControlBodyNeedsExactlyOneFrame) {
  proto::ReduceRequest body;
  body.set_round(3);
  Message m = MakeControlMessage(proto::COMMAND_REDUCE, body);
  proto::ReduceRequest parsed;
  ASSERT_TRUE(ParseControlBody(m, &parsed).ok());
  EXPECT_EQ(parsed.round(), 3u);
  m.frames.clear();
  EXPECT_EQ(ParseControlBody(m, &parsed).code(), StatusCode::kInvalidArgument);
}

TEST(ValidateTest, WellFormedPullAndPushPass) {
  Message pull = Pull({1, 2, 3}, {4});
  EXPECT_TRUE(ValidateKeyValueMessage(TwoTables(), &pull).ok());
  Message push = Push({1, 2, 3}, {4});
  EXPECT_TRUE(ValidateKeyValueMessage(TwoTables(), &push).ok());
  EXPECT_EQ(TotalKeys(push.header), 4u);
  EXPECT_EQ(TotalValueFloats(push.header, TwoTables()), 14u);
}

TEST(ValidateTest, TruncatedKeyFrameIsRejected) {
  Message m = Pull({1, 2, 3}, {4});
  m.frames[0] = Frame::Copy(m.frames[0].data(), m.frames[0].size() - 3);
  Status s = ValidateKeyValueMessage(TwoTables(), &m);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("key frame"), std::string::npos) << s.message();
}

TEST(ValidateTest, HeaderClaimingMoreKeysThanSentIsRejected) {
  Message m = Pull({1, 2}, {});
  m.header.mutable_tables(0)->set_num_keys(1000);
  EXPECT_EQ(ValidateKeyValueMessage(TwoTables(), &m).code(), StatusCode::kInvalidArgument);
}

TEST(ValidateTest, ValueFrameSizeMustMatchDims) {
  Message m = Push({1}, {2});
  m.frames[1] = Frame::Copy(m.frames[1].data(), m.frames[1].size() - sizeof(float));
  Status s = ValidateKeyValueMessage(TwoTables(), &m);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("value frame"), std::string::npos) << s.message();
}

TEST(ValidateTest, MissingOrExtraFramesAreRejected) {
  Message push = Push({1}, {2});
  push.frames.pop_back();
  EXPECT_EQ(ValidateKeyValueMessage(TwoTables(), &push).code(), StatusCode::kInvalidArgument);
  Message pull = Pull({1}, {2});
  pull.frames.push_back(Frame::Copy("x", 1));
  EXPECT_EQ(ValidateKeyValueMessage(TwoTables(), &pull).code(), StatusCode::kInvalidArgument);
}

TEST(ValidateTest, UnknownTableAndDtypeAreRejected) {
  Message m = Pull({1}, {2});
  m.header.mutable_tables(1)->set_table_id(9);
  EXPECT_NE(ValidateKeyValueMessage(TwoTables(), &m).message().find("unknown table id 9"),
            std::string::npos);
  Message push = Push({1}, {2});
  push.header.set_dtype(proto::DTYPE_FLOAT16);
  EXPECT_EQ(ValidateKeyValueMessage(TwoTables(), &push).code(), StatusCode::kInvalidArgument);
}

TEST(ValidateTest, PullReplyCarriesValuesOnly) {
  Message reply;
  reply.header.set_command(proto::COMMAND_PULL);
  reply.header.set_is_reply(true);
  reply.header.set_dtype(proto::DTYPE_FLOAT32);
  auto* t = reply.header.add_tables();
  t->set_table_id(0);
  t->set_num_keys(2);
  reply.frames.push_back(Frame::FromVector(std::vector<float>(8, 1.0f)));
  EXPECT_TRUE(ValidateKeyValueMessage(TwoTables(), &reply).ok());
  reply.frames[0] = Frame::FromVector(std::vector<float>(7, 1.0f));
  EXPECT_EQ(ValidateKeyValueMessage(TwoTables(), &reply).code(), StatusCode::kInvalidArgument);
}

TEST(ValidateTest, MisalignedFramesAreRealignedBeforeUse) {
  Message m = Pull({5, 6}, {});
  auto owner = std::make_shared<std::vector<char>>(64);
  std::memcpy(owner->data() + 4, m.frames[0].data(), 16);
  m.frames[0] = Frame::Wrap(owner, owner->data() + 4, 16);
  ASSERT_TRUE(ValidateKeyValueMessage(TwoTables(), &m).ok());
  ASSERT_TRUE(m.frames[0].IsAligned(8));
  EXPECT_EQ(m.frames[0].as<uint64_t>()[1], 6u);
}

TEST(ValidateTest, NonDataCommandIsRejected) {
  Message m;
  m.header.set_command(proto::COMMAND_REGISTER);
  EXPECT_EQ(ValidateKeyValueMessage(TwoTables(), &m).code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tessera
