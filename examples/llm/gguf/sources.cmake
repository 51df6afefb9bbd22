# The reader's translation units, shared by the library target here and the fuzzer in fuzz/, which
# compiles them itself so the parser is instrumented with the fuzzer's sanitizers.
set(CAPKV_GGUF_DIR ${CMAKE_CURRENT_LIST_DIR})
set(CAPKV_GGUF_SOURCES
    ${CAPKV_GGUF_DIR}/dequantize.cpp
    ${CAPKV_GGUF_DIR}/ggml_type.cpp
    ${CAPKV_GGUF_DIR}/gguf_error.cpp
    ${CAPKV_GGUF_DIR}/gguf_file.cpp
    ${CAPKV_GGUF_DIR}/gguf_value.cpp
    ${CAPKV_GGUF_DIR}/mapped_file.cpp)
# -ffp-contract=off: a fused d * q + m would differ in the last bit from ggml and gguf-py.
set(CAPKV_GGUF_COMPILE_OPTIONS -ffp-contract=off)
