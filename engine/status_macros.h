// Status propagation macros. Debian's Abseil (20220623) predates its own
// status macros, so the project keeps these two.
#ifndef LOYALTY_ENGINE_STATUS_MACROS_H_
#define LOYALTY_ENGINE_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define LOYALTY_STATUS_CONCAT_INNER_(a, b) a##b
#define LOYALTY_STATUS_CONCAT_(a, b) LOYALTY_STATUS_CONCAT_INNER_(a, b)

// Returns the status from the enclosing function if `expr` is not OK.
#define LOYALTY_RETURN_IF_ERROR(expr)                  \
  do {                                                 \
    ::absl::Status loyalty_status_ = (expr);           \
    if (!loyalty_status_.ok()) return loyalty_status_; \
  } while (false)

// `lhs = value of expr`, or returns its status if it is not OK.
#define LOYALTY_ASSIGN_OR_RETURN(lhs, expr)                                      \
  LOYALTY_ASSIGN_OR_RETURN_IMPL_(LOYALTY_STATUS_CONCAT_(loyalty_or_, __COUNTER__), \
                                 lhs, expr)
#define LOYALTY_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                   \
  if (!tmp.ok()) return std::move(tmp).status();       \
  lhs = std::move(tmp).value()

#endif  // LOYALTY_ENGINE_STATUS_MACROS_H_
