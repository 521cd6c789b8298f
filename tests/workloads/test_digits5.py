import torch

from workloads.digits5 import CHANNELS, DOMAINS, domain_data, node_data, transform


def test_five_disjoint_domains_with_all_ten_labels() -> None:
    sizes = []
    for index, name in enumerate(DOMAINS):
        data = domain_data(index)
        assert data.domain == name
        assert data.x_train.shape[1:] == (CHANNELS, 32, 32)
        assert set(data.y_test.tolist()) == set(range(10))
        assert 0.15 < len(data.y_test) / (len(data.y_test) + len(data.y_train)) < 0.25
        sizes.append(len(data.y_train) + len(data.y_test))
    assert sum(sizes) == 1797  # every bundled digit, in exactly one domain


def test_transforms_do_what_the_table_says() -> None:
    grey = torch.zeros(2, 1, 32, 32)
    grey[:, :, 8:24, 14:18] = 1.0  # a vertical bar
    assert torch.equal(transform(0, grey), grey.expand(-1, 3, -1, -1))
    assert torch.equal(transform(1, grey), 1 - grey.expand(-1, 3, -1, -1))
    rotated = transform(2, grey)
    assert rotated[0, 0, 16, 16] > 0.9 and rotated[0, 0, 9, 15] < 0.5
    noisy = transform(3, grey)
    assert 0 <= noisy.min() and noisy.max() <= 1
    assert 0.1 < float((noisy[:, :, :4, :4] > 0).float().mean()) < 0.9  # noise
    near, far = noisy[:, 0, 10:22, 13].mean(), noisy[:, 0, 10:22, 2].mean()
    assert near > far + 0.1  # the bar is blurred into its neighbours
    assert torch.equal(noisy[:, 0], noisy[:, 1])  # still grey
    coloured = transform(4, grey)
    background, digit = coloured[:, :, 0, 0], coloured[:, :, 16, 16]
    assert torch.allclose((background + 0.5) % 1.0, digit)
    assert not torch.equal(background[0], background[1])  # per image colours


def test_domains_look_different_but_are_repeatable() -> None:
    means = [float(domain_data(i).x_train.mean()) for i in range(len(DOMAINS))]
    assert max(means) - min(means) > 0.5
    again = transform(3, torch.full((1, 1, 32, 32), 0.5))
    assert torch.equal(again, transform(3, torch.full((1, 1, 32, 32), 0.5)))


def test_nodes_get_domain_p_mod_5_and_share_it_evenly() -> None:
    first, sixth = node_data(0, 10), node_data(5, 10)
    assert first.domain == sixth.domain == "grey"
    assert node_data(3, 10).domain == "blur-noise"
    pool = len(domain_data(0).y_train)
    assert len(first.y_train) + len(sixth.y_train) == pool
    assert torch.equal(first.x_test, domain_data(0).x_test)
    assert len(node_data(1, 5, samples_per_node=40).y_train) == 40
