// poscache — errors and the small Expected<T> used where failure is an ordinary outcome.
//
// Setup failures (opening a segment, reading a config) throw poscache::Error with a message
// that names what was wrong. Per-update validation (keys, decimals, field names) returns
// Expected<T> so a writer can count and report a bad update without unwinding.
#pragma once

#include <stdexcept>
#include <string>
#include <utility>
#include <variant>

namespace poscache {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// What went wrong with one piece of input: `message` names the part, the value and the limit.
struct Failure {
  std::string message;
};

template <class T>
class Expected {
 public:
  Expected(T value) : v_(std::move(value)) {}            // NOLINT(google-explicit-constructor)
  Expected(Failure failure) : v_(std::move(failure)) {}  // NOLINT(google-explicit-constructor)

  [[nodiscard]] bool ok() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }

  T& value() & {
    if (!ok()) throw Error(error());
    return std::get<0>(v_);
  }
  const T& value() const& {
    if (!ok()) throw Error(error());
    return std::get<0>(v_);
  }
  T&& value() && {
    if (!ok()) throw Error(error());
    return std::get<0>(std::move(v_));
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  [[nodiscard]] const std::string& error() const { return std::get<1>(v_).message; }

 private:
  std::variant<T, Failure> v_;
};

inline Failure fail(std::string message) {
  return Failure{std::move(message)};
}

}  // namespace poscache
