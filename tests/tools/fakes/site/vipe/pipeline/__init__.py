class Pipeline:
    def run(self, video_data):
        raise NotImplementedError
