// tlm's one error type and its check macro. Library code throws; only the launch/ mains
// catch, log and exit, so tests can observe every failure and MPI peers are never left
// waiting on a process that called exit() deep inside a library.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace tlm {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
inline void append(std::ostringstream&) {}
template <typename T, typename... Rest>
void append(std::ostringstream& os, const T& first, const Rest&... rest) {
  os << first;
  append(os, rest...);
}
}  // namespace detail

// Concatenates its arguments with operator<< into one message string.
template <typename... Args>
std::string str_cat(const Args&... args) {
  std::ostringstream os;
  detail::append(os, args...);
  return os.str();
}

}  // namespace tlm

// TLM_CHECK(cond, parts...) throws tlm::Error("parts..."). Messages name the file (and the
// tensor, line or field) the user has to look at; the source location is for us, at the end.
#define TLM_CHECK(cond, ...)                                                        \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      throw ::tlm::Error(::tlm::str_cat(__VA_ARGS__, "  [", __FILE__, ":", __LINE__, \
                                        "]"));                                      \
    }                                                                               \
  } while (0)

#define TLM_FAIL(...) TLM_CHECK(false, __VA_ARGS__)
