#include <gtest/gtest.h>

#include "core/tensor_reshape.h"

namespace flowserve {
namespace {

std::vector<int64_t> Reshape(std::vector<int64_t> actual, bool batched, std::vector<int64_t> from,
                             std::vector<int64_t> to) {
  auto r = ReshapeShape(actual, batched, from, to);
  EXPECT_TRUE(r.ok()) << r.status().message();
  return r.ok() ? r.value() : std::vector<int64_t>{};
}

TEST(ReshapeShape, FixedDimsKeepTheBatchDim) {
  EXPECT_EQ(Reshape({4}, false, {4}, {2, 2}), (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(Reshape({3, 4}, true, {4}, {2, 2}), (std::vector<int64_t>{3, 2, 2}));
  EXPECT_EQ(Reshape({3, 1}, true, {1}, {}), (std::vector<int64_t>{3}));
}

TEST(ReshapeShape, VariableDimsMapInOrderOrFromTheElementCount) {
  EXPECT_EQ(Reshape({5, 7}, false, {-1, -1}, {-1, 1, -1}), (std::vector<int64_t>{5, 1, 7}));
  EXPECT_EQ(Reshape({6, 4}, false, {-1, 4}, {2, -1}), (std::vector<int64_t>{2, 12}));
  EXPECT_EQ(Reshape({2, 10}, true, {-1}, {-1, 5}), (std::vector<int64_t>{2, 2, 5}));
}

TEST(ReshapeShape, ShapesThatDoNotFitAreErrorsNamingBoth) {
  auto wrong_rank = ReshapeShape({2, 2}, false, std::vector<int64_t>{4}, std::vector<int64_t>{4});
  ASSERT_FALSE(wrong_rank.ok());
  EXPECT_NE(wrong_rank.status().message().find("[2,2]"), std::string::npos)
      << wrong_rank.status().message();
  auto indivisible =
      ReshapeShape({7}, false, std::vector<int64_t>{-1}, std::vector<int64_t>{-1, 2});
  EXPECT_FALSE(indivisible.ok());
}

}  // namespace
}  // namespace flowserve
