// apply_log_settings: the config's log fields applied to platform/log. Apart from config.cc so
// the loader stays a leaf (its fuzzer builds config_sources alone, without the log library).
#include "platform/config/config.h"
#include "platform/log/log.h"

namespace herald::config {

void apply_log_settings(const Config& config) {
  switch (config.node().log_level()) {
    case LogLevel::debug: log::set_min_level(log::Level::kDebug); break;
    case LogLevel::info: log::set_min_level(log::Level::kInfo); break;
    case LogLevel::warn: log::set_min_level(log::Level::kWarn); break;
    case LogLevel::error: log::set_min_level(log::Level::kError); break;
  }
  log::set_format(config.node().log_format() == LogFormat::json ? log::Format::kJson
                                                                : log::Format::kText);
}

}  // namespace herald::config
