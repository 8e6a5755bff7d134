// One page of a cursor listing over a catalog table (GET /v1/accounts, GET /v1/groups): the
// records strictly after the cursor's key, at most `limit`, and whether more follow.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "controlplane/storage/tables.h"

namespace herald::api {

template <class T>
struct ScannedPage {
  std::vector<T> items;
  bool more = false;     // a record follows the page: the answer carries `next`
  uint64_t corrupt = 0;  // records `decode` refused: skipped (absent, as a lookup treats them)
};

// `decode(key, value)` returns std::optional<T>. One record past the page is read to decide
// `more`. The cursor's own key (which may no longer exist) is skipped: pages start strictly
// after it, so a cursor naming a deleted record still works.
template <class T, class Decode>
ScannedPage<T> scan_page(const storage::Tables& tables, storage::TableId table,
                         const std::string& from, size_t limit, Decode decode) {
  ScannedPage<T> page;
  page.items.reserve(limit);
  tables.scan(table, from, [&](std::string_view key, std::string_view value) {
    if (key == from) return true;
    if (page.items.size() == limit) {
      page.more = true;
      return false;
    }
    std::optional<T> item = decode(key, value);
    if (!item) {
      ++page.corrupt;
      return true;
    }
    page.items.push_back(*std::move(item));
    return true;
  });
  return page;
}

}  // namespace herald::api
