// The request head parser of the HTTP front (writer/http/request_head.hpp), on bytes alone.
#include "writer/http/request_head.hpp"

#include <gtest/gtest.h>

using namespace poscache::http;
using HeadState = HeadParse::State;

TEST(RequestHeadTest, ACompleteHeadGivesTheFieldsTheApiUses) {
  const std::string raw =
      "POST /v1/invalidate?x=1 HTTP/1.1\r\nHost: a\r\ncontent-length:  12 \r\n"
      "Authorization: Bearer t0k\r\n\r\n{\"all\":true}";
  const HeadParse p = parse_head(raw);
  ASSERT_EQ(p.state, HeadState::complete) << p.error;
  EXPECT_EQ(p.head.method, "POST");
  EXPECT_EQ(p.head.path, "/v1/invalidate");
  EXPECT_EQ(p.head.query, "x=1");
  EXPECT_EQ(p.head.authorization, "Bearer t0k");
  EXPECT_EQ(p.head.content_length, 12);
  EXPECT_EQ(raw.substr(p.head.head_bytes), "{\"all\":true}");
  // Bare LF line ends, and a stray empty line before the request line.
  const HeadParse lf = parse_head("\r\nGET /health HTTP/1.0\nHost: a\n\n");
  ASSERT_EQ(lf.state, HeadState::complete) << lf.error;
  EXPECT_EQ(lf.head.path, "/health");
  EXPECT_EQ(lf.head.content_length, -1);
}

TEST(RequestHeadTest, AHeadWithoutItsEmptyLineIsIncomplete) {
  EXPECT_EQ(parse_head("").state, HeadState::incomplete);
  EXPECT_EQ(parse_head("GET /health HT").state, HeadState::incomplete);
  EXPECT_EQ(parse_head("GET /health HTTP/1.1\r\nHost: a\r\n").state, HeadState::incomplete);
}

TEST(RequestHeadTest, APathIsPercentDecodedAndAnEncodedNulIsRefusedByName) {
  EXPECT_EQ(*decode_path("/v1/positions/spot/w1/SOL%2FUSDC"), "/v1/positions/spot/w1/SOL/USDC");
  const auto nul = decode_path("/v1/positions/spot/w%001/SOL");
  ASSERT_FALSE(nul);
  EXPECT_EQ(
      nul.error(),
      "the path holds an encoded NUL (%00) at byte 20: no part of a path or key may hold NUL");
  const HeadParse p = parse_head("GET /v1/accounts/w1%00x HTTP/1.1\r\n\r\n");
  EXPECT_EQ(p.state, HeadState::bad);
  EXPECT_EQ(p.status, 400);
  for (const char* bad : {"/a%", "/a%4", "/a%zz", "/a%4g"}) {
    const auto d = decode_path(bad);
    ASSERT_FALSE(d) << bad;
    EXPECT_NE(d.error().find("bad escape"), std::string::npos) << d.error();
  }
}

TEST(RequestHeadTest, WhatTheApiDoesNotServeIsRefusedWithAStatusAndAReason) {
  struct Case {
    std::string raw;
    int status;
    const char* says;
  } cases[] = {
      {"GARBAGE\r\n\r\n", 400, "is not 'METHOD /path HTTP/1.1'"},
      {std::string("\x00\xff\x01\r\n\r\n", 7), 400, "is not 'METHOD /path HTTP/1.1'"},
      {"GET /health HTTP/2.0\r\n\r\n", 505, "HTTP version 'HTTP/2.0' is not served"},
      {"GET health HTTP/1.1\r\n\r\n", 400, "must start with '/'"},
      {"GET /a\x01 HTTP/1.1\r\n\r\n", 400, "control character"},
      {"G(T /health HTTP/1.1\r\n\r\n", 400, "is not a token"},
      {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 411, "needs a Content-Length"},
      {"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400, "is not a number of bytes"},
      {"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400, "differ"},
      {"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", 400, "line folding"},
      {"GET / HTTP/1.1\r\nNo colon here\r\n\r\n", 400, "is not 'Name: value'"},
  };
  for (const Case& c : cases) {
    const HeadParse p = parse_head(c.raw);
    EXPECT_EQ(p.state, HeadState::bad) << c.raw;
    EXPECT_EQ(p.status, c.status) << c.raw;
    EXPECT_NE(p.error.find(c.says), std::string::npos) << c.raw << " -> " << p.error;
  }
}
