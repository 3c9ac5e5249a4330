"""The dataflow's vocabulary (see dataflow.py): which calls cut a graph, which are views, tensor
factories, no_grad contexts, layer kinds and loss kinds, and a few helpers on them. Pure."""
from __future__ import annotations

import ast
from gradpath.analysis.flow_values import N, Val


# -- vocabulary ------------------------------------------------------------------------------------
_CUT_METHODS = {"detach": ".detach()", "item": ".item()", "tolist": ".tolist()", "numpy": ".numpy()",
                "argmax": ".argmax()", "argmin": ".argmin()", "round": ".round()", "long": ".long()",
                "int": ".int()", "bool": ".bool()", "byte": ".byte()", "short": ".short()",
                "detach_": ".detach_()", "sign": ".sign()", "floor": ".floor()", "ceil": ".ceil()"}
_CUT_FUNCS = {"torch.argmax": "torch.argmax()", "torch.argmin": "torch.argmin()",
              "torch.round": "torch.round()", "torch.from_numpy": "torch.from_numpy()",
              "torch.eq": "torch.eq()", "torch.gt": "torch.gt()", "torch.lt": "torch.lt()",
              "torch.ge": "torch.ge()", "torch.le": "torch.le()", "torch.ne": "torch.ne()",
              "torch.sign": "torch.sign()", "torch.floor": "torch.floor()", "torch.ceil": "torch.ceil()",
              "torch.argsort": "torch.argsort()", "torch.bucketize": "torch.bucketize()"}
def _as_float(v) -> float:
    """float() of a literal; an int too large for a float is +/-inf, not an OverflowError."""
    try:
        return float(v)
    except OverflowError:
        return float("inf") if v > 0 else float("-inf")


_CUT_BUILTINS = {"float": "float()", "int": "int()", "round": "round()", "bool": "bool()"}
_INT_TENSOR_TYPES = {"torch.LongTensor", "torch.IntTensor", "torch.ShortTensor", "torch.ByteTensor",
                     "torch.CharTensor", "torch.BoolTensor", "torch.cuda.LongTensor", "torch.cuda.IntTensor"}
_INT_DTYPES = {"torch.long", "torch.int", "torch.int64", "torch.int32", "torch.int16", "torch.int8",
               "torch.uint8", "torch.bool", "torch.short"}
_VIEW_METHODS = {"view", "reshape", "squeeze", "unsqueeze", "flatten", "float", "double", "half",
                 "cpu", "cuda", "to", "contiguous", "permute", "transpose", "expand", "expand_as",
                 "clone", "view_as", "reshape_as", "t", "select", "narrow", "type_as", "bfloat16", "type",
                 "resize"}  # Tensor.resize: the deprecated view of old code
_INDEX_METHODS = {"gather", "index_select", "masked_select", "take", "take_along_dim"}
_TENSOR_FACTORIES = {"randn", "rand", "zeros", "ones", "empty", "full", "arange", "linspace", "eye",
                     "randint", "randn_like", "rand_like", "zeros_like", "ones_like", "empty_like",
                     "full_like", "randperm", "normal", "logspace", "tril", "triu"}
_TENSOR_CTORS = {"torch.tensor", "torch.as_tensor", "torch.Tensor", "torch.FloatTensor",
                 "torch.DoubleTensor", "torch.autograd.Variable", "torch.scalar_tensor"}
_NOGRAD_CTX = {"torch.no_grad", "torch.inference_mode", "torch.autograd.no_grad"}
_LINEARISH = {"Linear", "Bilinear", "LazyLinear", "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d",
              "ConvTranspose2d", "ConvTranspose3d", "LazyConv1d", "LazyConv2d", "Embedding"}
_PASS_LAYERS = {"Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "Flatten",
                "Unflatten", "Identity"}
_PARAMLESS_PREFIX = ("ReLU", "ReLU6", "Sigmoid", "Tanh", "Softmax", "LogSoftmax", "GELU", "SiLU",
                     "ELU", "LeakyReLU", "Softplus", "Mish", "Hardtanh", "Softsign", "Tanhshrink",
                     "Dropout", "AlphaDropout", "Flatten", "Unflatten", "MaxPool", "AvgPool",
                     "AdaptiveAvgPool", "AdaptiveMaxPool", "Identity", "Upsample", "ZeroPad",
                     "ConstantPad", "ReflectionPad", "ReplicationPad", "PixelShuffle", "Hardswish",
                     "Hardsigmoid", "SELU", "CELU", "Softmin", "Threshold", "LogSigmoid")
LOSS_KINDS = {
    "torch.nn.CrossEntropyLoss": "ce", "torch.nn.functional.cross_entropy": "ce",
    "torch.nn.NLLLoss": "nll", "torch.nn.functional.nll_loss": "nll",
    "torch.nn.BCELoss": "bce", "torch.nn.functional.binary_cross_entropy": "bce",
    "torch.nn.BCEWithLogitsLoss": "bcel", "torch.nn.functional.binary_cross_entropy_with_logits": "bcel",
}
_FUNCTIONAL_LOSSES = {"mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "kl_div", "cross_entropy",
                      "nll_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits",
                      "cosine_embedding_loss", "margin_ranking_loss", "triplet_margin_loss",
                      "poisson_nll_loss", "gaussian_nll_loss", "hinge_embedding_loss",
                      "soft_margin_loss", "multilabel_soft_margin_loss", "ctc_loss"}


_MODULE_METHODS = {"zero_grad", "state_dict", "apply", "modules", "children", "buffers", "train", "eval",
                   "to", "cuda", "cpu", "half", "float", "double", "type", "share_memory", "extra_repr",
                   "add_module", "requires_grad_", "cast", "save", "update", "step", "item"}


def _default_vals(args: ast.arguments) -> dict:
    """Parameters whose default is a plain number (`eps=1e-5`, `beta=1.0`, `smooth=-1`): their value
    when a call leaves them out. Anything else stays unknown."""
    out: dict = {}
    params = list(args.posonlyargs) + list(args.args)
    pairs = list(zip(params[len(params) - len(args.defaults):], args.defaults)) if args.defaults else []
    pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
    for a, d in pairs:
        neg = isinstance(d, ast.UnaryOp) and isinstance(d.op, ast.USub)
        c = d.operand if neg else d
        if isinstance(c, ast.Constant) and isinstance(c.value, (int, float)) and not isinstance(c.value, bool):
            v = -_as_float(c.value) if neg else _as_float(c.value)
            out[a.arg] = Val(N, kind="number", numeric=v, src=a,
                             shape="pos" if v > 0 else ("zero" if v == 0 else None))
    return out


def _hides_cut(v: "Val") -> bool:
    """A value without a graph whose reason is a real cut (of a model's output, or of a value that may
    carry one) or a forward under no_grad: requires_grad on it hides that (GP203)."""
    return bool(v.nograd) or any(not c.of_leaf for c in v.cuts)


def _is_torch(qn: str | None) -> bool:
    return bool(qn) and (qn == "torch" or qn.startswith("torch."))


def _fn_name(qn: str) -> str:
    return qn.rsplit(".", 1)[-1]
