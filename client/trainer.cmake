# Site-side data loading and training. hansa_data and hansa_models are free of LibTorch (tools
# and the coordinator may link them); hansa_trainer is the only target that compiles torch code.
hansa_library(hansa_data
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/data.cc
  DEPS hansa_status hansa_fileio ZLIB::ZLIB absl::strings absl::str_format)

hansa_library(hansa_models
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/models.cc
  DEPS hansa_status hansa_tensor absl::strings)

hansa_library(hansa_trainer
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/trainer.cc ${CMAKE_CURRENT_LIST_DIR}/models_torch.cc
  DEPS hansa_data hansa_models hansa_tensor hansa_privacy hansa_status absl::strings)
# Torch stays PRIVATE: users of trainer.h get neither its include paths nor its flags, only
# its libraries at link time (PRIVATE deps of a static library still propagate for linking).
target_link_libraries(hansa_trainer PRIVATE ${TORCH_LIBRARIES})
