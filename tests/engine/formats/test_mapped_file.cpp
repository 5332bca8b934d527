#include <gtest/gtest.h>

#include <filesystem>

#include "engine/common/error.h"
#include "engine/formats/mapped_file.h"
#include "tests/engine/formats/test_writers.h"

namespace tlm {
namespace {

class MappedFileTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = test::make_temp_dir(); }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_F(MappedFileTest, MapsContents) {
  const std::string path = dir_ + "/a.bin";
  test::write_file(path, {1, 2, 3, 4, 5});
  MappedFile f(path);
  ASSERT_EQ(f.size(), 5u);
  EXPECT_EQ(f.path(), path);
  EXPECT_EQ(f.data()[0], 1);
  EXPECT_EQ(f.data()[4], 5);

  MappedFile moved(std::move(f));
  EXPECT_EQ(moved.size(), 5u);
  EXPECT_EQ(moved.data()[2], 3);
  EXPECT_EQ(f.size(), 0u);  // NOLINT(bugprone-use-after-move): moved-from is empty

  const std::string other = dir_ + "/b.bin";
  test::write_file(other, {9});
  MappedFile assigned(other);
  assigned = std::move(moved);
  EXPECT_EQ(assigned.size(), 5u);
  EXPECT_EQ(assigned.data()[4], 5);
}

TEST_F(MappedFileTest, EmptyFile) {
  const std::string path = dir_ + "/empty.bin";
  test::write_file(path, {});
  MappedFile f(path);
  EXPECT_EQ(f.size(), 0u);
  EXPECT_NE(f.data(), nullptr);
}

TEST_F(MappedFileTest, Errors) {
  const std::string missing = dir_ + "/missing.bin";
  EXPECT_TLM_ERROR(MappedFile f(missing), missing, "No such file or directory");
  EXPECT_TLM_ERROR(MappedFile f(dir_), dir_, "not a regular file");
}

}  // namespace
}  // namespace tlm
