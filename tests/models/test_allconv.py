from model_tester import ModelTester


class TestAllConv(ModelTester):
    name = "allconv"
    kwargs = {"depth": 3, "width": 8, "dilation": [1, 2, 1]}
