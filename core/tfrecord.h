// TFRecord framing, the container of TensorBoard event files: each record is
// uint64 length, masked CRC-32C of those 8 bytes, the data, masked CRC-32C of
// the data, all little-endian.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace clipscale {

// Appends `data` to `out` as one framed record.
void AppendTfRecord(const std::string& data, std::string* out);

// Splits a whole TFRecord stream into its records' data; DataLossError on a
// checksum mismatch or a truncated record, naming the record's byte offset.
absl::StatusOr<std::vector<std::string>> ParseTfRecords(const std::string& stream);

}  // namespace clipscale
