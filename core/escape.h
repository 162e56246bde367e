// Untrusted bytes (a data line's excerpt, a peer's reason, a routing id) made safe to put in a
// protobuf string field, which must be valid UTF-8, and in a log line. Printable ASCII, tab and
// well-formed UTF-8 sequences of printable characters pass unchanged; every other byte (invalid or
// overlong UTF-8, surrogates, control characters, DEL) becomes `\xNN`. Backslashes pass unchanged,
// so text escaped once already (a reader's excerpt shows a tab as `\t`) stays readable; the result
// is for people, not for reading back. Thread-safe (pure).
#pragma once

#include <string>
#include <string_view>

namespace tessera {

std::string EscapeUntrusted(std::string_view bytes);

}  // namespace tessera
