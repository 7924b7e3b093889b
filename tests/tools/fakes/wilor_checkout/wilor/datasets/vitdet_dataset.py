import numpy as np


class ViTDetDataset:
    """Crops are not computed (the fake model does not look at pixels); the box geometry is.

    The frame index is read from pixel (0, 0), where the tests encode it (BGR image: B = t % 256,
    G = t // 256), and passed on as 'fake_frame'.
    """

    def __init__(self, cfg, img_cv2, boxes, right, rescale_factor=2.5, train=False, **kwargs):
        assert img_cv2.ndim == 3 and img_cv2.shape[2] == 3
        self.img = img_cv2
        boxes = boxes.astype(np.float32)
        self.center = (boxes[:, 2:4] + boxes[:, 0:2]) / 2.0
        self.size = rescale_factor * (boxes[:, 2:4] - boxes[:, 0:2]).max(axis=1)
        self.right = np.asarray(right, np.float32)

    def __len__(self):
        return len(self.center)

    def __getitem__(self, idx):
        H, W = self.img.shape[:2]
        frame = int(self.img[0, 0, 0]) + 256 * int(self.img[0, 0, 1])
        return {"img": np.zeros((3, 4, 4), np.float32), "personid": idx, "box_center": self.center[idx].copy(),
                "box_size": np.float32(self.size[idx]), "img_size": np.array([W, H], np.float32),
                "right": np.float32(self.right[idx]), "fake_frame": frame}
