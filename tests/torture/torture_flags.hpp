// The torture programs' command line (torture, account_torture, change_torture): "--name value"
// flags and "--name" switches, each bound to an Options member. A flag that is not known, lacks its
// value, or whose value is not a number of the member's type, in its range and whole, stops the
// program with exit 2 and an error naming the flag and the value, then the usage.
//
//   TortureFlags flags("torture", "usage: torture [--reads N] ...");
//   flags.value("--reads", o.reads).value("--seconds", o.seconds).toggle("--via-ring", o.via_ring);
//   flags.parse(argc, argv);
#pragma once

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <limits>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace poscache::test {

class TortureFlags {
 public:
  TortureFlags(std::string program, std::string usage)
      : program_(std::move(program)), usage_(std::move(usage)) {}

  // A flag with a value: an integer (signed or not), a double or a string.
  template <class T>
  TortureFlags& value(std::string name, T& out) {
    flags_.push_back(
        {std::move(name), true, [&out](std::string_view text) { return parse(text, out); }});
    return *this;
  }
  // A flag without a value: sets `out`.
  TortureFlags& toggle(std::string name, bool& out) {
    flags_.push_back({std::move(name), false, [&out](std::string_view) {
                        out = true;
                        return std::string();
                      }});
    return *this;
  }

  void parse(int argc, char** argv) const {
    for (int i = 1; i < argc; ++i) {
      const std::string_view a = argv[i];
      const Flag* f = find(a);
      if (f == nullptr) fail("unknown flag '" + std::string(a) + "'");
      if (!f->takes_value) {
        (void)f->set({});
        continue;
      }
      if (i + 1 >= argc) fail(f->name + " needs a value");
      const std::string_view v = argv[++i];
      if (const std::string why = f->set(v); !why.empty())
        fail(f->name + " '" + std::string(v) + "': " + why);
    }
  }

 private:
  struct Flag {
    std::string name;
    bool takes_value;
    std::function<std::string(std::string_view)> set;  // "" or why the value is refused
  };

  const Flag* find(std::string_view name) const {
    for (const Flag& f : flags_)
      if (f.name == name) return &f;
    return nullptr;
  }

  [[noreturn]] void fail(const std::string& why) const {
    std::fprintf(stderr, "%s: %s\n%s\n", program_.c_str(), why.c_str(), usage_.c_str());
    std::exit(2);
  }

  template <class T>
  static std::string parse(std::string_view text, T& out) {
    if constexpr (std::is_same_v<T, std::string>) {
      if (text.empty()) return "must not be empty";
      out = std::string(text);
      return {};
    } else {
      static_assert(std::is_arithmetic_v<T> && !std::is_same_v<T, bool>);
      T v{};
      const auto r = std::from_chars(text.data(), text.data() + text.size(), v);
      if (r.ec == std::errc::result_out_of_range) {
        if constexpr (std::is_floating_point_v<T>) return "is out of range";
        return "is out of range (" + std::to_string(std::numeric_limits<T>::lowest()) + " to " +
               std::to_string(std::numeric_limits<T>::max()) + ")";
      }
      if (r.ec != std::errc() || r.ptr != text.data() + text.size()) {
        if constexpr (std::is_floating_point_v<T>) return "is not a number";
        if constexpr (std::is_unsigned_v<T>) return "is not a whole number >= 0";
        return "is not a whole number";
      }
      out = v;
      return {};
    }
  }

  std::string program_, usage_;
  std::vector<Flag> flags_;
};

}  // namespace poscache::test
