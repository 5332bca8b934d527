# tlm_fuzz_target(<name> HARNESS <file> SOURCES <src>... [LIBS <lib>...] [INCLUDES <dir>...]
#                 CORPUS <dir> [DICT <file>] [MAX_LEN <bytes>] [OUTSIDE_CI]): a libFuzzer target. The
# project compiles with g++, which has no libFuzzer, so clang++ compiles the harness and the
# library sources it exercises (paths relative to the project root) with coverage,
# AddressSanitizer and UBSan. LIBS are the libraries they link (system ones, or LibTorch,
# which is not instrumented: the parser around it is), INCLUDES their headers. Registered as
# the CTest test fuzz.<name> (label fuzz): TLM_FUZZ_SECONDS (default 15) from the committed
# seed corpus, failing on any crash, sanitizer report, leak, timeout or out-of-memory
# (tests/run_fuzzer.sh). OUTSIDE_CI: built, not registered (a target whose third-party library
# is known to crash on some inputs; run it by hand with tests/run_fuzzer.sh).
function(tlm_fuzz_target name)
  cmake_parse_arguments(ARG "OUTSIDE_CI" "HARNESS;CORPUS;DICT;MAX_LEN" "SOURCES;LIBS;INCLUDES" ${ARGN})
  if(NOT TLM_WITH_FUZZERS)
    return()
  endif()
  find_program(CLANGXX clang++)
  if(NOT CLANGXX)
    message(STATUS "clang++ not found: fuzz target ${name} is not built")
    return()
  endif()
  if(NOT ARG_MAX_LEN)
    set(ARG_MAX_LEN 4096)
  endif()
  set(dir ${CMAKE_CURRENT_BINARY_DIR}/fuzz_${name}_obj)
  file(MAKE_DIRECTORY ${dir})
  set(flags -std=c++17 -O1 -g -Wall -Wextra -fno-omit-frame-pointer
      -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all -I${PROJECT_SOURCE_DIR})
  get_target_property(json_includes nlohmann_json::nlohmann_json INTERFACE_INCLUDE_DIRECTORIES)
  foreach(inc IN LISTS json_includes)
    # -isystem /usr/include would break libstdc++'s #include_next; it is searched anyway.
    if(inc AND NOT inc MATCHES "^/usr(/local)?/include/?$")
      list(APPEND flags -isystem ${inc})
    endif()
  endforeach()
  foreach(inc IN LISTS ARG_INCLUDES)
    list(APPEND flags -isystem ${inc})
  endforeach()
  set(objects)
  foreach(src IN LISTS ARG_SOURCES ARG_HARNESS)
    if(src STREQUAL ARG_HARNESS)
      set(path ${CMAKE_CURRENT_SOURCE_DIR}/${src})
    else()
      set(path ${PROJECT_SOURCE_DIR}/${src})
    endif()
    string(MAKE_C_IDENTIFIER ${src} stem)
    set(obj ${dir}/${stem}.o)
    add_custom_command(OUTPUT ${obj}
      COMMAND ${CLANGXX} ${flags} -MD -MF ${obj}.d -c ${path} -o ${obj}
      DEPENDS ${path} DEPFILE ${obj}.d
      COMMENT "clang++ (fuzz ${name}) ${src}" VERBATIM)
    list(APPEND objects ${obj})
  endforeach()
  set(binary ${CMAKE_CURRENT_BINARY_DIR}/fuzz_${name})
  add_custom_command(OUTPUT ${binary}
    COMMAND ${CLANGXX} -fsanitize=fuzzer,address,undefined ${objects} ${ARG_LIBS} -o ${binary}
    DEPENDS ${objects} COMMENT "Linking libFuzzer target fuzz_${name}" VERBATIM)
  # Target name differs from the output file: Ninja would see two rules for one path.
  add_custom_target(build_fuzz_${name} ALL DEPENDS ${binary})
  set(dict "")
  if(ARG_DICT)
    set(dict ${CMAKE_CURRENT_SOURCE_DIR}/${ARG_DICT})
  endif()
  if(ARG_OUTSIDE_CI)
    return()
  endif()
  add_test(NAME fuzz.${name}
           COMMAND sh ${PROJECT_SOURCE_DIR}/tests/run_fuzzer.sh ${binary} ${CMAKE_CURRENT_SOURCE_DIR}/${ARG_CORPUS}
                   ${CMAKE_CURRENT_BINARY_DIR}/fuzz_artifacts ${ARG_MAX_LEN} ${dict})
  set_tests_properties(fuzz.${name} PROPERTIES LABELS fuzz TIMEOUT 180)
endfunction()
