#include "writer/http/request_head.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <optional>

namespace poscache::http {

namespace {

// Shown in errors: at most 60 bytes of what the caller sent, control characters as '?'.
std::string shown(std::string_view v) {
  std::string out;
  for (const char c : v.substr(0, 60))
    out += static_cast<unsigned char>(c) < 0x20 || c == 0x7f ? '?' : c;
  return v.size() > 60 ? out + "..." : out;
}

// RFC 9110 tchar: what a method or a header name may hold.
bool is_token(std::string_view s) {
  if (s.empty()) return false;
  return std::all_of(s.begin(), s.end(), [](char ch) {
    const auto c = static_cast<unsigned char>(ch);
    return std::isalnum(c) != 0 ||
           std::string_view("!#$%&'*+-.^_`|~").find(ch) != std::string_view::npos;
  });
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

HeadParse bad(int status, std::string error) {
  HeadParse p;
  p.state = HeadParse::State::bad;
  p.status = status;
  p.error = std::move(error);
  return p;
}

// "METHOD target HTTP/1.x": fills method, path and query, or says what is wrong.
std::optional<HeadParse> request_line(std::string_view line, RequestHead& h) {
  const std::size_t sp1 = line.find(' ');
  const std::size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos) {
    return bad(400, "the request line '" + shown(line) +
                        "' is not 'METHOD /path HTTP/1.1' (three parts, one space apart)");
  }
  const std::string_view method = line.substr(0, sp1), target = line.substr(sp1 + 1, sp2 - sp1 - 1),
                         version = line.substr(sp2 + 1);
  if (!is_token(method)) return bad(400, "the method '" + shown(method) + "' is not a token");
  if (version != "HTTP/1.1" && version != "HTTP/1.0")
    return bad(505, "HTTP version '" + shown(version) + "' is not served: use HTTP/1.1");
  for (const char c : target) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f)
      return bad(400, "the request target holds a control character: escape it as %XX");
  }
  h.method = std::string(method);
  if (target == "*") {
    h.path = "*";
    return std::nullopt;
  }
  if (!target.starts_with('/'))
    return bad(400, "the request target '" + shown(target) + "' must start with '/'");
  const std::size_t q = target.find('?');
  if (q != std::string_view::npos) h.query = std::string(target.substr(q + 1));
  auto path = decode_path(target.substr(0, q));
  if (!path) return bad(400, path.error());
  h.path = std::move(*path);
  return std::nullopt;
}

// One "Name: value" field; the ones the API uses are kept.
std::optional<HeadParse> header_field(std::string_view line, RequestHead& h) {
  if (line.front() == ' ' || line.front() == '\t')
    return bad(400, "a header line starts with white space (obsolete line folding is refused)");
  const std::size_t colon = line.find(':');
  const std::string_view name = line.substr(0, colon);
  if (colon == std::string_view::npos || !is_token(name))
    return bad(400, "the header line '" + shown(line) + "' is not 'Name: value'");
  const std::string_view value = trim(line.substr(colon + 1));
  if (iequals(name, "Content-Length")) {
    std::int64_t n = -1;
    const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
    if (value.empty() || ec != std::errc() || end != value.data() + value.size() || n < 0)
      return bad(400, "Content-Length '" + shown(value) + "' is not a number of bytes");
    if (h.content_length >= 0 && h.content_length != n)
      return bad(400, "two Content-Length headers that differ");
    h.content_length = n;
  } else if (iequals(name, "Transfer-Encoding")) {
    return bad(411, "a request body needs a Content-Length (Transfer-Encoding '" + shown(value) +
                        "' is not accepted)");
  } else if (iequals(name, "Expect")) {
    h.expect_continue = iequals(value, "100-continue");
  } else if (iequals(name, "Authorization")) {
    h.authorization = std::string(value);
  }
  return std::nullopt;
}

}  // namespace

Expected<std::string> decode_path(std::string_view raw) {
  std::string out;
  out.reserve(raw.size());
  for (std::size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] != '%') {
      out += raw[i];
      continue;
    }
    const int hi = i + 2 < raw.size() ? hex_digit(raw[i + 1]) : -1;
    const int lo = i + 2 < raw.size() ? hex_digit(raw[i + 2]) : -1;
    if (hi < 0 || lo < 0) {
      return fail("the path has a bad escape '" + shown(raw.substr(i, 3)) + "' at byte " +
                  std::to_string(i) + ": '%' must be followed by two hex digits");
    }
    if (hi == 0 && lo == 0) {
      return fail("the path holds an encoded NUL (%00) at byte " + std::to_string(i) +
                  ": no part of a path or key may hold NUL");
    }
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

HeadParse parse_head(std::string_view bytes) {
  HeadParse p;
  std::size_t at = 0;
  bool first = true;
  for (;;) {
    const std::size_t nl = bytes.find('\n', at);
    if (nl == std::string_view::npos) return p;  // incomplete
    std::string_view line = bytes.substr(at, nl - at);
    at = nl + 1;
    if (line.ends_with('\r')) line.remove_suffix(1);
    if (first && line.empty()) continue;  // a stray CRLF before the request line (RFC 9112 2.2)
    if (line.empty()) break;
    std::optional<HeadParse> error =
        first ? request_line(line, p.head) : header_field(line, p.head);
    if (error) return *error;
    first = false;
  }
  p.state = HeadParse::State::complete;
  p.head.head_bytes = at;
  return p;
}

}  // namespace poscache::http
