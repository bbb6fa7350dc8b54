// ueq/runtime/result.hpp — a value or an error; a bare error.
//
// What it is for: the C++ API's way to report failure without exceptions.
// Errors are errno values (std::generic_category()), so the C facade can hand
// them to errno unchanged.
//  - result<T>: a T, or a std::error_code.
//  - status: just an errno value (0 = success), for hot paths. It costs one
//    int (building a std::error_code calls into libstdc++ for its category
//    even on success) and offers what an error_code does (value(), code(),
//    comparison with std::errc).
// Success reads the same way on both: ok() is true on success, and a
// result<T> also converts to true on success. A status has no conversion
// to bool at all, so that `if (s)` cannot be read either way.
//
// Thread-safety: plain value types.
//
// Usage:
//   ueq::result<std::unique_ptr<ueq::ceq>> q = ueq::ceq::create({});
//   if (!q) return q.error();          // std::error_code, e.g. EINVAL
//   if (ueq::status s = (*q)->post(7, 1); !s.ok()) log(s.code().message());
#pragma once

#include <cerrno>
#include <system_error>
#include <utility>
#include <variant>

namespace ueq {

inline std::error_code errno_code(int e) noexcept {
  return {e, std::generic_category()};
}

class [[nodiscard]] status {
 public:
  constexpr status() noexcept = default;
  constexpr explicit status(int errno_value) noexcept : e_(errno_value) {}
  constexpr bool ok() const noexcept { return e_ == 0; }
  constexpr int value() const noexcept { return e_; }
  std::error_code code() const noexcept { return e_ ? errno_code(e_) : std::error_code{}; }
  friend constexpr bool operator==(status a, std::errc b) noexcept {
    return a.e_ == static_cast<int>(b);
  }

 private:
  int e_ = 0;
};

template <class T>
class [[nodiscard]] result {
 public:
  result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  result(std::error_code ec) : v_(ec) {}     // NOLINT
  explicit operator bool() const noexcept { return v_.index() == 0; }
  bool ok() const noexcept { return v_.index() == 0; }
  std::error_code error() const noexcept { return ok() ? std::error_code{} : std::get<1>(v_); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &std::get<0>(v_); }
  const T* operator->() const { return &std::get<0>(v_); }

 private:
  std::variant<T, std::error_code> v_;
};

}  // namespace ueq
