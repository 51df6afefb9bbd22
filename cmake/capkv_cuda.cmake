# The CUDA backend: the capkv::cuda interface target (host launchers in include/capkv/cuda, kernels
# in kernels/) and the helpers its tests and benchmark use. Included from the top-level
# CMakeLists.txt before the capkv target exists; target names resolve at generate time.
#
# Everything here must configure and build on a machine with the toolkit but no GPU (CI): nothing
# runs device code at configure or build time.

# Default: on when capkv is the top-level project and nvcc is found. Sanitized builds leave it off:
# the CUDA runtime and AddressSanitizer's shadow memory do not mix, and the device-independent math
# is tested there anyway (tests/cuda builds it without CUDA). A parent project that embeds capkv
# gets the backend by default only if it enabled CUDA itself, so a CPU-only consumer does not pay
# for CUDA compiler detection.
set(_capkv_cuda_default OFF)
get_property(_capkv_languages GLOBAL PROPERTY ENABLED_LANGUAGES)
if(PROJECT_IS_TOP_LEVEL OR CAPKV_CUDA OR "CUDA" IN_LIST _capkv_languages)
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER AND NOT CAPKV_SANITIZE)
    set(_capkv_cuda_default ON)
  endif()
endif()
option(CAPKV_CUDA "Build the CUDA backend with its tests and benchmark (needs nvcc, not a GPU)"
       ${_capkv_cuda_default})

if(NOT CAPKV_CUDA)
  message(STATUS "capkv: CUDA backend off (CAPKV_CUDA=OFF or no nvcc found)")
  return()
endif()
if(NOT CMAKE_CUDA_COMPILER)
  message(FATAL_ERROR "CAPKV_CUDA is ON but CMake found no CUDA compiler: set CMAKE_CUDA_COMPILER "
                      "(e.g. /usr/local/cuda/bin/nvcc) or configure with -DCAPKV_CUDA=OFF")
endif()

# sm_90 (H100/H200) only by default: every extra architecture multiplies the device compile time,
# which on a 2-core CI machine is most of the build. Override with -DCMAKE_CUDA_ARCHITECTURES=...
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  set(CMAKE_CUDA_ARCHITECTURES 90 CACHE STRING "CUDA architectures to compile for")
endif()
enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)
if(CUDAToolkit_VERSION VERSION_LESS 12.0)
  message(FATAL_ERROR "capkv's CUDA backend needs CUDA 12 or newer (found ${CUDAToolkit_VERSION})")
endif()
message(STATUS "capkv: CUDA backend on (nvcc ${CUDAToolkit_VERSION}, "
               "architectures ${CMAKE_CUDA_ARCHITECTURES})")

add_library(capkv_cuda INTERFACE)
add_library(capkv::cuda ALIAS capkv_cuda)
# The repository root, so launchers include their kernels as "kernels/<name>.cuh". Installed, the
# kernels sit in include/capkv/cuda_kernels/kernels (the top-level CMakeLists.txt installs them) and
# that folder's parent takes the root's place, so the same include lines work.
include(GNUInstallDirs)
set(CAPKV_CUDA_KERNELS_INCLUDEDIR ${CMAKE_INSTALL_INCLUDEDIR}/capkv/cuda_kernels)
target_include_directories(capkv_cuda INTERFACE $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}>
                                                $<INSTALL_INTERFACE:${CAPKV_CUDA_KERNELS_INCLUDEDIR}>)
# Exported as capkv::cuda, the name the build tree's alias has.
set_target_properties(capkv_cuda PROPERTIES EXPORT_NAME cuda)
target_compile_features(capkv_cuda INTERFACE cxx_std_20)
target_link_libraries(capkv_cuda INTERFACE capkv CUDA::cudart CUDA::cublas CUDA::cusolver)
# CUDA C++20 as a plain flag: CMake 3.25 knows neither cuda_std_20 nor CUDA_STANDARD 20 for nvcc 13,
# so the compile feature cannot carry it (consumers must not set CUDA_STANDARD themselves).
# --expt-relaxed-constexpr: constexpr helpers (std::min, numeric_limits) from device code.
# 20012: Eigen 3.4 (pulled in by capkv's score types) marks defaulted members __host__ __device__.
target_compile_options(capkv_cuda INTERFACE
                       $<$<COMPILE_LANGUAGE:CUDA>:-std=c++20 --expt-relaxed-constexpr -diag-suppress=20012>)

# The top-level add_compile_options() gives every target GCC warning (and sanitizer) flags, which
# nvcc rejects. For a target with CUDA sources, hand them to the host compiler instead; -Wpedantic
# is dropped there because nvcc's generated host code uses GNU line markers it would flag.
function(capkv_cuda_host_flags target)
  get_target_property(options ${target} COMPILE_OPTIONS)
  if(NOT options)
    set(options)
  endif()
  set(fixed)
  foreach(option IN LISTS options)
    list(APPEND fixed "$<$<NOT:$<COMPILE_LANGUAGE:CUDA>>:${option}>")
    if(NOT option STREQUAL "-Wpedantic")
      list(APPEND fixed "$<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=${option}>")
    endif()
  endforeach()
  # Eigen's headers carry nvcc-only pragmas that GCC's -Wall flags in the host pass.
  list(APPEND fixed "$<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wno-unknown-pragmas>")
  set_target_properties(${target} PROPERTIES COMPILE_OPTIONS "${fixed}")
endfunction()
