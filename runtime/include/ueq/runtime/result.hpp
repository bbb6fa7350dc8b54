// ueq/runtime/result.hpp — a value or a std::error_code.
//
// What it is for: the C++ API's way to report failure without exceptions.
// Error codes are errno values in std::generic_category(), so the C facade can
// hand them to errno unchanged.
//
// Thread-safety: a plain value type.
//
// Usage:
//   ueq::result<std::unique_ptr<ueq::ceq>> q = ueq::ceq::create({});
//   if (!q) return q.error();      // std::error_code, e.g. EINVAL
//   (*q)->post(7, 1);
#pragma once

#include <cerrno>
#include <system_error>
#include <utility>
#include <variant>

namespace ueq {

inline std::error_code errno_code(int e) noexcept { return {e, std::generic_category()}; }

template <class T>
class [[nodiscard]] result {
 public:
  result(T value) : v_(std::move(value)) {}                     // NOLINT: implicit by design
  result(std::error_code ec) : v_(ec) {}                         // NOLINT
  explicit operator bool() const noexcept { return v_.index() == 0; }
  bool ok() const noexcept { return v_.index() == 0; }
  std::error_code error() const noexcept {
    return ok() ? std::error_code{} : std::get<1>(v_);
  }
  T& value() & { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  T* operator->() { return &std::get<0>(v_); }

 private:
  std::variant<T, std::error_code> v_;
};

}  // namespace ueq
