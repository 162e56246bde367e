#include "core/status.h"

#include <gtest/gtest.h>

#include <memory>

namespace tessera {
namespace {

StatusOr<int> Half(int x) {
  if (x % 2 != 0) return Status::InvalidArgument(std::to_string(x) + " is odd");
  return x / 2;
}

Status Quarter(int x, int* out) {
  TS_ASSIGN_OR_RETURN(int half, Half(x));
  TS_ASSIGN_OR_RETURN(*out, Half(half));
  return OkStatus();
}

TEST(StatusTest, DefaultIsOk) {
  Status s;
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.ToString(), "OK");
}

TEST(StatusTest, ToStringNamesCodeAndMessage) {
  EXPECT_EQ(Status::DataLoss("bad frame").ToString(), "DATA_LOSS: bad frame");
  EXPECT_EQ(Status::Unavailable("x").code(), StatusCode::kUnavailable);
}

TEST(StatusTest, WithContextPrefixesMessageAndKeepsOk) {
  EXPECT_EQ(Status::NotFound("row").WithContext("pull from server:3").message(),
            "pull from server:3: row");
  EXPECT_TRUE(OkStatus().WithContext("ignored").ok());
}

TEST(StatusOrTest, MacrosPropagateErrorsAndValues) {
  int out = 0;
  EXPECT_TRUE(Quarter(8, &out).ok());
  EXPECT_EQ(out, 2);
  Status s = Quarter(6, &out);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "3 is odd");
}

TEST(StatusOrTest, HoldsMoveOnlyValues) {
  StatusOr<std::unique_ptr<int>> v = std::make_unique<int>(5);
  ASSERT_TRUE(v.ok());
  std::unique_ptr<int> p = std::move(v).value();
  EXPECT_EQ(*p, 5);
}

}  // namespace
}  // namespace tessera
