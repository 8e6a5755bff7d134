// HTTP status codes Herald sends and their reason phrases (RFC 9110 §15).
#pragma once

#include <string_view>

namespace herald::http {

// The RFC 9110 reason phrase for `status` ("Not Found"), or "" for a code without one: the
// reason phrase is optional on the wire (RFC 9112 §4), the status code is what clients read.
std::string_view reason_phrase(int status);

}  // namespace herald::http
