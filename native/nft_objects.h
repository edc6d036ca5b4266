// RAII owners for libnftnl objects: every nftnl_*_alloc is paired with its free on every path.
#pragma once

#include <libnftnl/chain.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>

#include <memory>

namespace svcplane {

struct NftnlFree {
  void operator()(nftnl_table* p) const { nftnl_table_free(p); }
  void operator()(nftnl_chain* p) const { nftnl_chain_free(p); }
  void operator()(nftnl_rule* p) const { nftnl_rule_free(p); }
  void operator()(nftnl_set* p) const { nftnl_set_free(p); }
  void operator()(nftnl_expr* p) const { nftnl_expr_free(p); }
  void operator()(nftnl_set_elem* p) const { nftnl_set_elem_free(p); }
  void operator()(nftnl_expr_iter* p) const { nftnl_expr_iter_destroy(p); }
  void operator()(nftnl_set_elems_iter* p) const { nftnl_set_elems_iter_destroy(p); }
};

using TablePtr = std::unique_ptr<nftnl_table, NftnlFree>;
using ChainPtr = std::unique_ptr<nftnl_chain, NftnlFree>;
using RulePtr = std::unique_ptr<nftnl_rule, NftnlFree>;
using SetPtr = std::unique_ptr<nftnl_set, NftnlFree>;
using ExprPtr = std::unique_ptr<nftnl_expr, NftnlFree>;
using ElemPtr = std::unique_ptr<nftnl_set_elem, NftnlFree>;
using ExprIterPtr = std::unique_ptr<nftnl_expr_iter, NftnlFree>;
using ElemIterPtr = std::unique_ptr<nftnl_set_elems_iter, NftnlFree>;

}  // namespace svcplane
