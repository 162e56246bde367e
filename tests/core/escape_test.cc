#include "core/escape.h"

#include <gtest/gtest.h>

#include <string>

namespace tessera {
namespace {

TEST(EscapeUntrustedTest, PrintableAsciiTabAndWellFormedUtf8PassUnchanged) {
  EXPECT_EQ(EscapeUntrusted("train.txt:4: bad rating 'x'\tok"), "train.txt:4: bad rating 'x'\tok");
  EXPECT_EQ(EscapeUntrusted("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"),
            "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
  EXPECT_EQ(EscapeUntrusted(""), "");
}

TEST(EscapeUntrustedTest, InvalidUtf8AndControlBytesAreEscaped) {
  EXPECT_EQ(EscapeUntrusted("caf\xe9"), "caf\\xe9");  // Latin-1 byte
  EXPECT_EQ(EscapeUntrusted("\xff\xfe"
                            "1"),
            "\\xff\\xfe"
            "1");                                                 // UTF-16 byte-order mark
  EXPECT_EQ(EscapeUntrusted(std::string("a\0b", 3)), "a\\x00b");  // NUL
  EXPECT_EQ(EscapeUntrusted("line\r\n"), "line\\x0d\\x0a");
  EXPECT_EQ(EscapeUntrusted("\x1b[31m"), "\\x1b[31m");                     // terminal escape
  EXPECT_EQ(EscapeUntrusted("\xc0\xaf"), "\\xc0\\xaf");                    // overlong '/'
  EXPECT_EQ(EscapeUntrusted("\xed\xa0\x80"), "\\xed\\xa0\\x80");           // surrogate
  EXPECT_EQ(EscapeUntrusted("\xf4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80");  // above U+10FFFF
  EXPECT_EQ(EscapeUntrusted("\xe2\x82"), "\\xe2\\x82");                    // truncated sequence
  EXPECT_EQ(EscapeUntrusted("\xc2\x85"), "\\xc2\\x85");                    // C1 control (NEL)
}

TEST(EscapeUntrustedTest, TextEscapedOnceAlreadyPassesUnchanged) {
  // A reader's excerpt shows a tab as a backslash and a t: it is not escaped a second time.
  EXPECT_EQ(EscapeUntrusted("bad rating (4\\t5\\tx)"), "bad rating (4\\t5\\tx)");
}

TEST(EscapeUntrustedTest, EveryByteValueGivesValidUtf8) {
  for (int c = 0; c < 256; ++c) {
    const std::string escaped = EscapeUntrusted(std::string(1, static_cast<char>(c)));
    for (char e : escaped) {
      if (c >= 0x80 || c < 0x20 || c == 0x7f) {
        EXPECT_LT(static_cast<unsigned char>(e), 0x80) << "byte " << c;
      }
    }
  }
}

}  // namespace
}  // namespace tessera
