# tlm_fuzz_target(<name> HARNESS <file> SOURCES <src>... [LIBS <lib>...] CORPUS <dir>
#                 [DICT <file>] [MAX_LEN <bytes>] [OUTSIDE_CI]): a libFuzzer target. The project
# compiles with g++, which has no libFuzzer, so the target's compile and link commands are
# launched through tests/clang_fuzz.sh: clang++ compiles the harness and the SOURCES it
# exercises (paths relative to the project root) with coverage, AddressSanitizer and UBSan.
# LIBS are linked as by any target (engine libraries, LibTorch, system ones), g++-built and
# uninstrumented: the parser under test is instrumented, what it calls into is not.
# Registered as the CTest test fuzz.<name> (label fuzz): TLM_FUZZ_SECONDS (default 15) from
# the committed seed corpus, failing on any crash, sanitizer report, leak, timeout or
# out-of-memory (tests/run_fuzzer.sh). OUTSIDE_CI: built, not registered (a target whose
# third-party library is known to crash on some inputs; run it by hand with run_fuzzer.sh).
function(tlm_fuzz_target name)
  cmake_parse_arguments(ARG "OUTSIDE_CI" "HARNESS;CORPUS;DICT;MAX_LEN" "SOURCES;LIBS" ${ARGN})
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
  set(sources ${ARG_HARNESS})
  foreach(src IN LISTS ARG_SOURCES)
    list(APPEND sources ${PROJECT_SOURCE_DIR}/${src})
  endforeach()
  add_executable(fuzz_${name} ${sources})
  target_include_directories(fuzz_${name} PRIVATE ${PROJECT_SOURCE_DIR})
  target_link_libraries(fuzz_${name} PRIVATE nlohmann_json::nlohmann_json ${ARG_LIBS})
  target_compile_options(fuzz_${name} PRIVATE -Wall -Wextra)
  set(launcher sh ${PROJECT_SOURCE_DIR}/tests/clang_fuzz.sh ${CLANGXX})
  string(REPLACE ";" " " launcher "${launcher}")
  set_target_properties(fuzz_${name} PROPERTIES RULE_LAUNCH_COMPILE "${launcher} compile"
                                                RULE_LAUNCH_LINK "${launcher} link")
  set(dict "")
  if(ARG_DICT)
    set(dict ${CMAKE_CURRENT_SOURCE_DIR}/${ARG_DICT})
  endif()
  if(ARG_OUTSIDE_CI)
    return()
  endif()
  add_test(NAME fuzz.${name}
           COMMAND sh ${PROJECT_SOURCE_DIR}/tests/run_fuzzer.sh $<TARGET_FILE:fuzz_${name}>
                   ${CMAKE_CURRENT_SOURCE_DIR}/${ARG_CORPUS} ${CMAKE_CURRENT_BINARY_DIR}/fuzz_artifacts
                   ${ARG_MAX_LEN} ${dict})
  set_tests_properties(fuzz.${name} PROPERTIES LABELS fuzz TIMEOUT 180)
endfunction()
