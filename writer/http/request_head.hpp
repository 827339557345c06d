// A request's head (request line and header fields) as the HTTP front (front.hpp) reads it off a
// connection, before any worker sees it: the few fields the API uses, the path percent-decoded,
// and an error that names what is wrong (a 4xx and its text) for everything it refuses.
//
// What it accepts is the subset the API needs, nothing more: HTTP/1.0 and 1.1, origin-form
// targets ("/path?query") and "*" (OPTIONS), a body only with a Content-Length (chunked bodies
// are refused with 411), no obsolete line folding. Lines end in CRLF or a bare LF.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "poscache/error.hpp"

namespace poscache::http {

struct RequestHead {
  std::string method;
  std::string path;   // percent-decoded; may hold any byte but NUL (%00 is refused)
  std::string query;  // after '?', as received
  std::string authorization;
  std::int64_t content_length = -1;  // -1: no Content-Length
  bool expect_continue = false;      // "Expect: 100-continue": the client waits to send the body
  std::size_t head_bytes = 0;        // through the empty line that ends the head
};

struct HeadParse {
  enum class State { incomplete, complete, bad };
  State state = State::incomplete;
  RequestHead head;   // complete
  int status = 0;     // bad: the answer's status
  std::string error;  // bad: what is wrong
};

// Parses the head at the start of `bytes`, which hold what has arrived so far. `incomplete`: no
// empty line yet (the caller enforces the head's size limit and deadline).
HeadParse parse_head(std::string_view bytes);

// The path of a request target percent-decoded; an error names a bad escape or an encoded NUL.
// A NUL would end the key a C string holds: it is refused rather than cut short.
Expected<std::string> decode_path(std::string_view raw);

}  // namespace poscache::http
