// Checkpoints of the global model at the coordinator: state_dir/checkpoints/round-NNNN.safetensors
// (loadable by PyTorch users with `safetensors`) and the strategy's state beside it, written to a
// temp file, fsynced and renamed; and reading the last one back to resume.
//
// Const and stateless beyond its paths: any thread, though the engine writes from its driver.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "common/fileio/shared_bytes.h"
#include "common/status/status.h"
#include "common/tensor/tensor.h"
#include "coordinator/state_store.h"
#include "coordinator/strategy.h"

namespace hansa {

// The global model as published: the safetensors payload sites download (tagged with the round
// and the model name), its SHA-256 (lowercase hex) and its layout. The payload is the only copy
// of the model's values the coordinator keeps: values() views its data section in place. Once
// written (Write) or loaded (Load), the payload is a mapping of its checkpoint file, whose
// pages are resident only while they are read (SharedBytes::Evict gives them back).
struct PublishedModel {
  ModelLayout layout;
  SharedBytes payload;
  std::string sha256;

  // layout.TotalElements() floats, in layout order: the payload's tail, 4-byte aligned (the
  // header's length prefix and JSON are padded to a multiple of 8, and a mapping starts on a
  // page; Load checks it). Valid while `payload` is; null when there is no payload.
  const float* values() const;
  // A Model of its own: the one place the values are copied out of the payload.
  Model ToModel() const;
};

class Checkpoints {
 public:
  Checkpoints(std::string state_dir, std::string model_name)
      : state_dir_(std::move(state_dir)), model_name_(std::move(model_name)) {}

  std::string ModelPath(int64_t round) const;
  // The strategy's state after `round` (momentum, moments), beside the checkpoint.
  std::string StrategyStatePath(int64_t round) const;

  // `model` as published after `round`: its values copied once, into the payload.
  PublishedModel Encode(int64_t round, const Model& model) const;
  // The same payload, consuming `model`: its values are copied in blocks, each block's whole
  // pages given back to the system once copied (ReleaseConsumedPages), so that the model and
  // the payload together stay near one model's size rather than two.
  PublishedModel Encode(int64_t round, Model&& model) const;
  // Writes `*published` as the checkpoint of `round`, and `strategy`'s state after a round > 0
  // when it has any; the file system's error. Then serves `*published` from the file: its
  // payload becomes a read-only mapping of the checkpoint (the same bytes), and the copy in
  // memory goes, so that between rounds the coordinator holds no model-sized buffer of its own.
  // Where the file cannot be mapped, the payload stays in memory (with a warning).
  Status Write(int64_t round, PublishedModel* published, const Strategy& strategy) const;
  // The checkpoint `last` names, as published: a mapping of the file is the payload, not
  // decoded and encoded again. DataLoss when its digest is not the one the state database
  // recorded or it is not a payload this class encodes (F32 tensors, tiled in order, aligned
  // data).
  StatusOr<PublishedModel> Load(const RoundRecord& last) const;

 private:
  const std::string state_dir_;
  const std::string model_name_;
};

}  // namespace hansa
